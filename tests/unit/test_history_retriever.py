"""The normal retriever answers from history when the index has it, and ranks exactly as before when it has none."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ml.answer.extractive import ExtractiveAnswerer
from ml.retrieve import RetrievalConfig, Retriever
from ml.types import Chunk, Hit

SHA_CACHE = "a" * 40
SHA_TOPK = "b" * 40
QUESTIONS = [
    "Which PR introduced top-k sampling in generate?",
    "Why was use_cache disabled when gradient checkpointing is enabled?",
    "How do I call generate with top_k?",
    "When did sdpa become the default attention implementation?",
]


def _chunk(id_: str, kind: str, **kw: object) -> Chunk:
    return Chunk(id=id_, kind=kind, text=kw.pop("text", f"text of {id_}"), path=kw.pop("path", "src/m.py"), **kw)


CODE = [
    Hit(chunk=_chunk("gen", "function", symbol="generate", history=[SHA_TOPK + "#2"]), score=1.0, dense=0.6),
    Hit(chunk=_chunk("pick", "function", symbol="pick"), score=0.7, dense=0.5),
    Hit(chunk=_chunk("pick2", "function", symbol="pick"), score=0.6, dense=0.5),  # same symbol: deduped
    Hit(chunk=_chunk("fwd", "method", symbol="LlamaModel.forward", history=[SHA_CACHE + "#3"]), score=0.5, dense=0.4),
]
COMMIT_TOPK = _chunk(
    "c-topk", "commit", path="", symbol=f"{SHA_TOPK[:7]} Add top-k sampling to generate (#2)", commit=SHA_TOPK, pr=2
)
COMMIT_CACHE = _chunk(
    "c-cache",
    "commit",
    path="",
    symbol=f"{SHA_CACHE[:7]} Disable use_cache when gradient checkpointing is on (#3)",
    commit=SHA_CACHE,
    pr=3,
    issue=10,
)


class FakeIndex:
    """Returns fixed candidates (filtered by kind) and counts; records what it was asked."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.count_calls = 0
        self.queried_kinds: list[Sequence[str] | None] = []

    def counts_by_kind(self) -> dict[str, int]:
        self.count_calls += 1
        out: dict[str, int] = {}
        for h in self.hits:
            out[h.chunk.kind] = out.get(h.chunk.kind, 0) + 1
        return out

    def hybrid(self, query: str, vector: np.ndarray | None, limit: int, alpha: float, **kw: object) -> list[Hit]:
        kinds = kw.get("kinds")
        self.queried_kinds.append(kinds)  # type: ignore[arg-type]
        prefix = str(kw.get("path_prefix") or "")
        found = [
            h.model_copy(deep=True)
            for h in self.hits
            if (not kinds or h.chunk.kind in kinds) and h.chunk.path.startswith(prefix)  # type: ignore[operator]
        ][:limit]
        best = max((h.score for h in found), default=1.0)
        for h in found:  # Weaviate's relative-score fusion scales each result list to its best hit
            h.score /= best
        return found


class FakeEmbedder:
    model_name = "fake"

    def embed_query(self, text: str) -> np.ndarray:
        return np.ones(4, dtype=np.float32)


def _ranking(hits: list[Hit]) -> list[tuple[str, float]]:
    return [(h.chunk.id, round(h.score, 6)) for h in hits]


def test_without_history_chunks_the_ranking_is_identical_and_checked_once() -> None:
    index = FakeIndex(CODE)
    auto = Retriever(index, FakeEmbedder())  # type: ignore[arg-type]
    off = Retriever(FakeIndex(CODE), FakeEmbedder(), RetrievalConfig(history=False))  # type: ignore[arg-type]
    for question in QUESTIONS:
        assert _ranking(auto.search(question, k=5)) == _ranking(off.search(question, k=5))
    assert index.count_calls == 1  # the has-history check is cached per retriever
    assert index.queried_kinds == [None] * len(QUESTIONS)  # no routed second search


def test_history_questions_route_boost_and_follow_code_to_its_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    import ml.retrieve

    fetched: list[list[str]] = []

    def fetch_commits(index: object, shas: list[str]) -> list[Chunk]:
        fetched.append(shas)
        return [c for c in (COMMIT_TOPK, COMMIT_CACHE) if c.commit in shas]

    monkeypatch.setattr(ml.retrieve, "fetch_commits", fetch_commits)
    index = FakeIndex([*CODE, Hit(chunk=COMMIT_TOPK, score=0.55, dense=0.5)])
    retriever = Retriever(index, FakeEmbedder())  # type: ignore[arg-type]

    hits = retriever.search("Which PR introduced top-k sampling in generate?", k=5)
    assert hits[0].chunk.id == "c-topk"  # routed and boosted above the code that mentions it
    assert index.queried_kinds[-1] == ["commit", "diff", "pr", "issue"]

    hits = retriever.search("Why was use_cache disabled in LlamaModel.forward?", k=5)
    ids = [h.chunk.id for h in hits]
    assert "c-cache" in ids and ids.index("c-cache") == ids.index("fwd") + 1  # just below the code that led to it
    assert any(SHA_CACHE in shas for shas in fetched)

    # A code question keeps the code ranking; a path filter turns history off.
    plain = _ranking(retriever.search("How do I call generate with top_k?", k=3))
    assert [i for i, _ in plain][:2] == ["gen", "pick"]
    assert all(h.chunk.kind != "commit" for h in retriever.search("Which PR added pick?", path_prefix="src/"))


def test_with_the_learned_ranker_a_history_question_still_gets_its_routed_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ml.retrieve
    from ml.rank import FEATURES, RankModel

    monkeypatch.setattr(ml.retrieve, "fetch_commits", lambda index, shas: [])

    model = RankModel([0.0] * len(FEATURES), [0.0] * len(FEATURES), [1.0] * len(FEATURES))
    model.weights[FEATURES.index("hybrid")] = 1.0
    # Enough code that the commit is found only by the routed history search, not among the code candidates.
    filler = [Hit(chunk=_chunk(f"f{i}", "function", symbol=f"f{i}"), score=0.4, dense=0.3) for i in range(40)]
    index = FakeIndex([*CODE, *filler, Hit(chunk=COMMIT_TOPK, score=0.55, dense=0.5)])
    retriever = Retriever(index, FakeEmbedder(), model=model)  # type: ignore[arg-type]
    hits = retriever.search("Which PR introduced top-k sampling in generate?", k=5)
    assert hits[0].chunk.id == "c-topk"
    # A code question is ordered by the ranker: its scores are probabilities.
    code = retriever.search("How do I call generate with top_k?", k=3)
    assert all(0.0 < h.score < 1.0 for h in code) and code[0].chunk.kind != "commit"


def test_extractive_answers_cite_commit_pr_and_issue() -> None:
    hits = [
        Hit(
            chunk=COMMIT_CACHE.model_copy(update={"url": f"https://github.com/o/r/commit/{SHA_CACHE}"}),
            score=1,
            dense=0.9,
        ),
        Hit(chunk=COMMIT_TOPK, score=0.8, dense=0.8),
        Hit(chunk=CODE[3].chunk, score=0.5, dense=0.5),
    ]
    answer = ExtractiveAnswerer(threshold=0.0).answer("Why was use_cache disabled under gradient checkpointing?", hits)
    first, second = answer.answer.splitlines()[:2]
    assert (
        first
        == f"Commit {SHA_CACHE[:7]} (PR #3, fixes #10): Disable use_cache when gradient checkpointing is on (#3) [1]"
    )
    assert second == f"See also Commit {SHA_TOPK[:7]} (PR #2): Add top-k sampling to generate (#2) [2]"
    assert (answer.sources[0].commit, answer.sources[0].pr, answer.sources[0].issue) == (SHA_CACHE, 3, 10)
