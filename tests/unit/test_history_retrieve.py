"""History intent, boosts and the code -> commit walk."""

from __future__ import annotations

from ml.retrieve_history import boost_history, commits_of, expand_history, history_intent, spread_commits
from ml.sources.git_history import commit_chunk_id
from ml.sources.github_chunks import MAX_THREAD_CHARS, issue_chunks
from ml.types import Chunk, Hit


def test_history_questions_have_intent_and_code_questions_do_not() -> None:
    assert history_intent("Which PR introduced top-k sampling?") == 1.0
    assert history_intent("Why was use_cache disabled under gradient checkpointing?") >= 0.8
    assert history_intent("When did sdpa become the default?") >= 0.8
    assert history_intent("How do I load a model in 4-bit?") == 0.0


def _hit(kind: str, score: float, **kw) -> Hit:
    return Hit(chunk=Chunk(id=f"{kind}{score}", kind=kind, text="", path="p.py", **kw), score=score)


def test_boost_lifts_history_chunks_only_for_history_questions() -> None:
    hits = [_hit("function", 0.9), _hit("commit", 0.7, commit="a" * 40)]
    assert [h.chunk.kind for h in boost_history(hits, 1.0)] == ["commit", "function"]
    assert boost_history(hits, 0.0) == hits


def test_code_hits_lead_to_the_commits_that_changed_them() -> None:
    sha = "b" * 40
    code = _hit("method", 0.8, history=[f"{sha}#5", "c" * 40])
    commit = Chunk(id=commit_chunk_id("minitf", sha), kind="commit", text="Stabilise", path="", commit=sha, pr=5)
    asked: list[list[str]] = []

    def fetch(shas: list[str]) -> list[Chunk]:
        asked.append(shas)
        return [commit] if sha in shas else []

    hits = expand_history([code], fetch)
    assert commits_of(hits) == [sha] and hits[1].score < code.score
    assert asked == [[sha, "c" * 40]]
    assert expand_history(hits, fetch) == hits and len(asked) == 2  # a commit already present is not added again


def test_long_threads_are_split_and_keep_their_title() -> None:
    item = {"number": 9, "title": "Crash", "body": "x", "created_at": "2024-01-01T00:00:00Z", "user": {"login": "a"}}
    comments = [
        {"id": i, "user": {"login": "b"}, "created_at": f"2024-01-02T00:00:{i:02d}Z", "body": "y" * 900}
        for i in range(10)
    ]
    chunks = issue_chunks("minitf", "example/minitf", item, comments)
    assert len(chunks) >= 3 and all(len(c.text) <= MAX_THREAD_CHARS + 200 for c in chunks)
    assert all(c.text.startswith("Issue #9: Crash") for c in chunks) and len({c.id for c in chunks}) == len(chunks)
    assert chunks[1].url.startswith("https://github.com/example/minitf/issues/9#issuecomment-")


def test_one_commit_with_many_diffs_gives_way_to_the_next_commits() -> None:
    """Five diffs of one wide commit lead; the commit asked about ranks sixth. With two chunks per commit ahead of
    the others it ranks third, and nothing is dropped: the wide commit's other diffs follow, in their order."""
    wide, narrow, code = "a" * 40, "b" * 40, _hit("function", 0.5)
    hits = [_hit("diff", 1.0 - i * 0.01, commit=wide) for i in range(5)] + [_hit("diff", 0.9, commit=narrow), code]
    spread = spread_commits(hits)
    assert commits_of(spread[:5]) == [wide, narrow]
    assert [h.chunk.commit for h in spread[:3]] == [wide, wide, narrow]
    assert sorted(h.chunk.id for h in spread) == sorted(h.chunk.id for h in hits)
    assert spread[3] is code and [h.score for h in spread[4:]] == [0.98, 0.97, 0.96]
    assert spread_commits(hits, per_commit=0) == hits
