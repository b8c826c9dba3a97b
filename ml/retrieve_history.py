"""History-aware retrieval: detect why/when/which-PR questions, boost history chunks, walk code -> commit links.

The general retriever calls these after its own re-ranking:

    intent = history_intent(question)
    hits = boost_history(hits, intent)
    hits = expand_history(hits, lambda ids: fetch_chunks(index, ids), corpus)

`search_history` composes them (plus routing: a second search restricted to history kinds) for evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ml.sources.git_history import commit_chunk_id
from ml.types import Chunk, Hit

HISTORY_KINDS = ("commit", "diff", "pr", "issue")

# Cue -> weight; the intent is the largest matching weight, so one strong cue is enough.
_CUES: list[tuple[re.Pattern[str], float]] = [
    (
        re.compile(
            r"\bwhich (pr|pull request|commit|change|issue)\b|\b(pr|commit)\b.*\b(introduc|add|fix|chang)", re.I
        ),
        1.0,
    ),
    (re.compile(r"\bwhy (was|were|is|are|does|did|do)\b", re.I), 0.8),
    (re.compile(r"\bwhen (was|were|did|is)\b|\bsince (when|which)\b", re.I), 0.9),
    (
        re.compile(
            r"\b(revert|regression|changelog|history|introduced|became|deprecated|removed|renamed|dropped)\w*", re.I
        ),
        0.6,
    ),
    (re.compile(r"\b(who|what) (changed|added|removed|broke)\b", re.I), 0.8),
    (re.compile(r"\b(issue|pull request|PR|commit)s?\b|#\d+", re.I), 0.5),
]


def history_intent(question: str) -> float:
    """How much a question asks about history (0 = about code as it is, 1 = "which PR introduced X")."""
    return max((w for pattern, w in _CUES if pattern.search(question)), default=0.0)


def boost_history(hits: list[Hit], intent: float, weight: float = 0.5) -> list[Hit]:
    """Scale scores of history chunks by (1 + weight * intent) and re-sort; code hits keep their scores."""
    if intent <= 0:
        return hits
    out = [
        Hit(chunk=h.chunk, score=h.score * (1 + weight * intent), dense=h.dense) if h.chunk.kind in HISTORY_KINDS else h
        for h in hits
    ]
    return sorted(out, key=lambda h: h.score, reverse=True)


def history_shas(chunk: Chunk) -> list[str]:
    """The commit SHAs of a code chunk's `history` entries (`sha` or `sha#pr`), most recent first."""
    return [ref.split("#", 1)[0] for ref in chunk.history]


def expand_history(
    hits: list[Hit],
    fetch: Callable[[list[str]], list[Chunk]],
    corpus: str,
    from_top: int = 5,
    per_chunk: int = 2,
    decay: float = 0.9,
) -> list[Hit]:
    """Add the commits that last changed the top code hits, just below the code hit that led to them.

    A "why is X like this" question finds X's code; X's commit message may never name X, so the commit is
    reached through the code chunk's blame links rather than by text similarity.
    """
    present = {h.chunk.id for h in hits}
    wanted: dict[str, float] = {}
    for hit in hits[:from_top]:
        if hit.chunk.kind in HISTORY_KINDS:
            continue
        for rank, sha in enumerate(history_shas(hit.chunk)[:per_chunk]):
            cid = commit_chunk_id(corpus, sha)
            if cid not in present:
                wanted[cid] = max(wanted.get(cid, 0.0), hit.score * decay * (1 - 0.1 * rank))
    if not wanted:
        return hits
    added = [Hit(chunk=c, score=wanted[c.id]) for c in fetch(list(wanted)) if c.id in wanted]
    return sorted(hits + added, key=lambda h: h.score, reverse=True)


def _to_chunk(obj: Any) -> Chunk:
    p = obj.properties
    return Chunk(
        id=str(obj.uuid),
        kind=p["kind"],
        text=p.get("text") or "",
        path=p.get("path") or "",
        start_line=int(p.get("start_line") or 0),
        end_line=int(p.get("end_line") or 0),
        symbol=p.get("symbol") or "",
        corpus_version=p.get("corpus_version") or "",
        url=p.get("url") or "",
        commit=p.get("commit") or "",
        issue=int(p["issue"]) if p.get("issue") else None,
        pr=int(p["pr"]) if p.get("pr") else None,
        date=p.get("date") or "",
        history=list(p.get("history") or []),
    )


def fetch_chunks(index: Any, ids: list[str]) -> list[Chunk]:
    """Chunks by id from a `WeaviateIndex` (the commit chunks a code chunk links to)."""
    from weaviate.classes.query import Filter

    if not ids:
        return []
    response = index.collection.query.fetch_objects(filters=Filter.by_id().contains_any(ids), limit=len(ids))
    return [_to_chunk(obj) for obj in response.objects]


def search_kinds(
    index: Any, embedder: Any, question: str, limit: int, kinds: Sequence[str] = HISTORY_KINDS
) -> list[Hit]:
    """Hybrid search restricted to some kinds, straight through the Weaviate client (routing for history intent)."""
    from weaviate.classes.query import Filter, HybridFusion, MetadataQuery

    from ml.index.weaviate_index import QUERY_PROPERTIES

    vector = embedder.embed_query(question)
    response = index.collection.query.hybrid(
        query=question,
        vector=vector.tolist(),
        alpha=0.5,
        limit=limit,
        filters=Filter.by_property("kind").contains_any(list(kinds)),
        query_properties=QUERY_PROPERTIES,
        fusion_type=HybridFusion.RELATIVE_SCORE,
        return_metadata=MetadataQuery(score=True),
    )
    return [Hit(chunk=_to_chunk(o), score=float(o.metadata.score or 0.0)) for o in response.objects]


def search_history(
    search: Callable[..., list[Hit]],
    fetch: Callable[[list[str]], list[Chunk]],
    route_search: Callable[[str, int], list[Hit]] | None,
    question: str,
    corpus: str,
    k: int = 5,
    links: bool = True,
    boost: bool = True,
    route: bool = True,
    threshold: float = 0.5,
) -> list[Hit]:
    """Retrieval for a question with the history steps switched on or off (for measuring each).

    Args:
        search: `Retriever.search`-like: (query, k=...) -> hits.
        fetch: Chunks by id.
        route_search: (query, limit) -> hits of history kinds only (`search_kinds`); routing is off when None.
        question: The question.
        corpus: Corpus name used in chunk ids.
        k: Hits to return.
        links: Walk code -> commit through `Chunk.history`.
        boost: Boost history chunks by intent.
        route: For history questions, also search history kinds only and merge.
        threshold: Intent above which routing applies.
    """
    intent = history_intent(question)
    hits = search(question, k=max(k, 20))
    if route and route_search is not None and intent >= threshold:
        extra = route_search(question, max(k, 20))
        seen = {h.chunk.id for h in hits}
        hits = sorted(hits + [h for h in extra if h.chunk.id not in seen], key=lambda h: h.score, reverse=True)
    if boost:
        hits = boost_history(hits, intent)
    if links:
        hits = expand_history(hits, fetch, corpus)
    return hits[:k]


def commits_of(hits: Sequence[Hit]) -> list[str]:
    """Distinct commits the hits cite, in rank order (history chunks only: a code chunk's pin is not an answer)."""
    out: list[str] = []
    for h in hits:
        if h.chunk.kind in HISTORY_KINDS and h.chunk.commit and h.chunk.commit not in out:
            out.append(h.chunk.commit)
    return out
