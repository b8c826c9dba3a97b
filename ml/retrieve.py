"""Retrieval: hybrid candidates from the index, then the re-ranking steps the dev-set numbers support."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ml.answer.units import quoted as quoted_message
from ml.index.embed import Embedder
from ml.index.tokens import split_identifier
from ml.index.weaviate_index import WeaviateIndex
from ml.rank import Candidate, RankModel, asked_families, featurize
from ml.retrieve_history import boost_history, expand_history, fetch_commits, history_intent, spread_commits
from ml.types import HISTORY_KINDS, Hit

CODE_TOKEN = re.compile(r"`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*(?:[._][A-Za-z0-9_]+)+|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b")


@dataclass
class RetrievalConfig:
    """Knobs measured on the dev set (`tqa eval retrieval`); defaults are the best measured setting."""

    alpha: float = 0.5
    candidates: int = 20
    symbol_boost: float = 0.3
    name_boost: float = 0.0
    dedupe_symbols: bool = True
    # History steps (`bench/history_eval.py`); None = on when the index holds commit/diff/issue/PR chunks.
    history: bool | None = None
    history_boost: float = 0.5
    history_links: bool = True
    history_route_threshold: float = 0.5
    # Chunks of one commit kept ahead of other commits for a history question (`spread_commits`; 0 = off).
    history_per_commit: int = 2
    # Learned re-ranking (`ml.rank`): on when a model is given to the retriever; extra candidate searches feed it.
    ranker: bool = True
    bm25_candidates: int = 30
    family_candidates: int = 15
    # A message the question quotes is searched alone (BM25): the question's other words ("a GPT-style tokenizer")
    # outweigh it in the full-question searches, and the code that raises it is one long function among many.
    quoted_candidates: int = 10


def query_identifiers(query: str) -> set[str]:
    """Identifiers the user typed (`from_pretrained`, `BitsAndBytesConfig`, `model.generate`), lower-cased."""
    found: set[str] = set()
    for quoted, bare in CODE_TOKEN.findall(query):
        token = quoted or bare
        for part in re.split(r"[^A-Za-z0-9_]+", token):
            if part:
                found.add(part.lower())
    return found


class Retriever:
    """Searches the index for a question; stateless apart from the clients it is given."""

    def __init__(
        self,
        index: WeaviateIndex,
        embedder: Embedder,
        config: RetrievalConfig | None = None,
        model: RankModel | None = None,
        families: dict[str, str] | None = None,
    ):
        self.index = index
        self.embedder = embedder
        self.config = config or RetrievalConfig()
        self.model = model
        self.families = families or {}
        self._has_history: bool | None = None

    def history_enabled(self) -> bool:
        """Whether the history steps run: the config says so, or (once per retriever) the index has history."""
        if self.config.history is not None:
            return self.config.history
        if self._has_history is None:
            counts = self.index.counts_by_kind()
            self._has_history = any(counts.get(kind) for kind in HISTORY_KINDS)
        return self._has_history

    def search(
        self,
        query: str,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        path_prefix: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[Hit]:
        """The best `k` hits for `query`, best first."""
        t0 = time.perf_counter()
        vector = self.embedder.embed_query(query) if self.config.alpha > 0 or self.ranked else None
        t1 = time.perf_counter()
        ranked = self.ranked
        if ranked:
            candidates, asked = self.candidates(query, vector, k, kinds, path_prefix)
            hits = [c.hit for c in candidates if c.hybrid_rank and c.hybrid_rank <= max(k, self.config.candidates)]
        else:
            hits = self.index.hybrid(
                query,
                vector,
                limit=max(k, self.config.candidates),
                alpha=self.config.alpha,
                kinds=kinds,
                path_prefix=path_prefix,
            )
        # History steps need every kind and no path filter: the commits they add have no path.
        history = (
            not path_prefix
            and (kinds is None or any(kind in HISTORY_KINDS for kind in kinds))
            and self.history_enabled()
        )
        intent = history_intent(query) if history else 0.0
        if intent and intent >= self.config.history_route_threshold:
            # Routing: a history question also searches history chunks alone, so code cannot crowd them out.
            routed = self.index.hybrid(
                query,
                vector,
                limit=max(k, self.config.candidates),
                alpha=self.config.alpha,
                kinds=[kind for kind in HISTORY_KINDS if kinds is None or kind in kinds],
            )
            # Scores of each search are relative to its own best hit; a chunk found by both keeps the higher one.
            merged = {h.chunk.id: h for h in hits}
            for h in routed:
                if h.chunk.id not in merged or merged[h.chunk.id].score < h.score:
                    merged[h.chunk.id] = h
            hits = list(merged.values())
            # The ranker never saw commits, diffs, issues or PRs in training: a routed history question is ordered
            # by the history steps over the hybrid scores, as before the ranker.
            ranked = False
        t2 = time.perf_counter()
        if ranked:
            hits = self.rank(query, candidates, asked)
        else:
            hits = self.rerank(query, hits)
        if history:
            hits = boost_history(hits, intent, self.config.history_boost)
            if self.config.history_links:
                hits = expand_history(hits, lambda shas: fetch_commits(self.index, shas))
            if intent:
                # Within the k hits returned, so the answer's evidence stays the same; only its order changes.
                hits = spread_commits(hits[:k], self.config.history_per_commit) + hits[k:]
        if timings is not None:
            timings["embed_ms"] = (t1 - t0) * 1000
            timings["search_ms"] = (t2 - t1) * 1000
            timings["rerank_ms"] = (time.perf_counter() - t2) * 1000
        return hits[:k]

    @property
    def ranked(self) -> bool:
        return self.model is not None and self.config.ranker

    def candidates(
        self,
        query: str,
        vector: Any,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        path_prefix: str | None = None,
    ) -> tuple[list[Candidate], list[str]]:
        """The union of the hybrid candidates, the BM25 candidates, the BM25 candidates of a message the question
        quotes and, for a family the question names, that family's folder; each with the scores of the searches
        that found it. Returns them and the asked families."""
        found: dict[str, Candidate] = {}
        limit = max(k, self.config.candidates)
        main = self.index.hybrid(query, vector, limit, self.config.alpha, kinds=kinds, path_prefix=path_prefix)
        for rank, hit in enumerate(main, 1):
            found[hit.chunk.id] = Candidate(hit, hybrid=hit.score, hybrid_rank=rank)
        if self.config.bm25_candidates:
            bm25 = self.index.hybrid(
                query, vector, self.config.bm25_candidates, 0.0, kinds=kinds, path_prefix=path_prefix
            )
            for rank, hit in enumerate(bm25, 1):
                c = found.setdefault(hit.chunk.id, Candidate(hit))
                c.bm25, c.bm25_rank = hit.score, rank
        message = quoted_message(query) if self.config.quoted_candidates else ""
        if message:
            exact = self.index.hybrid(
                message, vector, self.config.quoted_candidates, 0.0, kinds=kinds, path_prefix=path_prefix
            )
            for rank, hit in enumerate(exact, 1):
                found.setdefault(hit.chunk.id, Candidate(hit)).quoted_rank = rank
        asked = asked_families(query, self.families) if not path_prefix else []
        for family in asked:
            routed = self.index.hybrid(
                query,
                vector,
                self.config.family_candidates,
                self.config.alpha,
                kinds=kinds,
                path_prefix=self.families[family],
            )
            for rank, hit in enumerate(routed, 1):
                # Scores of a routed search are relative to its own best hit: a candidate found only there gets a
                # rank past the main list's, so its weight comes from the family features, not an inflated score.
                found.setdefault(hit.chunk.id, Candidate(hit, hybrid=hit.score * 0.5, hybrid_rank=limit + rank))
        return list(found.values()), asked

    def rank(self, query: str, candidates: list[Candidate], asked: list[str]) -> list[Hit]:
        """Order candidates by the learned model's probability (the hit's new score); one hit per symbol."""
        assert self.model is not None
        x = featurize(query, candidates, self.families, asked)
        probabilities = self.model.probability(x)
        order = sorted(range(len(candidates)), key=lambda i: -probabilities[i])
        hits, seen = [], set()
        for i in order:
            hit = candidates[i].hit
            key = (hit.chunk.path, hit.chunk.symbol or hit.chunk.id)
            if self.config.dedupe_symbols and key in seen:
                continue
            seen.add(key)
            hits.append(Hit(chunk=hit.chunk, score=float(probabilities[i]), dense=hit.dense))
        return hits

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Boost hits whose symbol the question names (exactly, or by its words); keep one hit per symbol."""
        idents = query_identifiers(query)
        if self.config.symbol_boost and idents:
            for hit in hits:
                names = {p.lower() for p in hit.chunk.symbol.split(".")}
                if names & idents:
                    hit.score += self.config.symbol_boost
        if self.config.name_boost:
            asked = {_prefix(w) for w in words(query)}
            for hit in hits:
                parts = {_prefix(w) for w in split_identifier(hit.chunk.symbol.rsplit(".", 1)[-1])}
                if parts:
                    hit.score += self.config.name_boost * len(parts & asked) / len(parts)
        hits.sort(key=lambda h: h.score, reverse=True)
        if self.config.dedupe_symbols:
            seen: set[tuple[str, str]] = set()
            unique = []
            for hit in hits:
                key = (hit.chunk.path, hit.chunk.symbol or hit.chunk.id)
                if key in seen:
                    continue
                seen.add(key)
                unique.append(hit)
            hits = unique
        return hits


def _prefix(word: str) -> str:
    """A crude stem that lets `norm` meet `normalization` and `embeddings` meet `embedding`."""
    return word[:4]


def words(text: str) -> list[str]:
    """Lower-cased word and identifier parts, for overlap measures."""
    out: list[str] = []
    for token in re.findall(r"[A-Za-z0-9_]+", text):
        out.extend(split_identifier(token) or [token.lower()])
    return out
