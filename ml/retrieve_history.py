"""History-aware retrieval: detect why/when/which-PR questions, boost history chunks, walk code -> commit links.

`Retriever.search` applies these when the index holds history chunks (`RetrievalConfig.history`):

    intent = history_intent(question)          # >= threshold: also search history kinds only (routing)
    hits = boost_history(hits, intent)
    hits = expand_history(hits, lambda shas: fetch_commits(index, shas))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ml.index.weaviate_index import chunk_from_properties
from ml.types import HISTORY_KINDS, Chunk, Hit

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
    (
        re.compile(
            r"\b(who|what) (changed|added|removed|broke)\b|\bwho (made|implemented|introduced|wrote|set|raised|"
            r"deprecated|dropped|fixed|moved|renamed|switched|enabled|disabled)\b",
            re.I,
        ),
        0.8,
    ),
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


def spread_commits(hits: list[Hit], per_commit: int = 2) -> list[Hit]:
    """Keep at most `per_commit` chunks of one commit ahead of the next commits' chunks; the rest follow, in order.

    A commit that touched many files answers with a diff chunk per file, and one such commit ("ipex intel
    extension for pytorch integration": eight diffs) can fill the top 5 so that the commit asked about (a
    two-file "Remove ipex") ranks sixth. Its best chunks keep their places; its others give way to them.
    """
    if per_commit <= 0:
        return hits
    seen: dict[str, int] = {}
    ahead, behind = [], []
    for hit in hits:
        sha = hit.chunk.commit if hit.chunk.kind in ("commit", "diff") else ""
        if sha and seen.get(sha, 0) >= per_commit:
            behind.append(hit)
            continue
        if sha:
            seen[sha] = seen.get(sha, 0) + 1
        ahead.append(hit)
    return ahead + behind


def history_shas(chunk: Chunk) -> list[str]:
    """The commit SHAs of a code chunk's `history` entries (`sha` or `sha#pr`), most recent first."""
    return [ref.split("#", 1)[0] for ref in chunk.history]


def expand_history(
    hits: list[Hit],
    fetch: Callable[[list[str]], list[Chunk]],
    from_top: int = 5,
    per_chunk: int = 2,
    decay: float = 0.9,
) -> list[Hit]:
    """Add the commits that last changed the top code hits, just below the code hit that led to them.

    A "why is X like this" question finds X's code; X's commit message may never name X, so the commit is
    reached through the code chunk's blame links rather than by text similarity.

    Args:
        hits: Ranked hits, best first.
        fetch: Commit chunks by SHA (`fetch_commits`).
        from_top: How many top hits lead to their commits.
        per_chunk: How many of a hit's most recent commits to add.
        decay: An added commit scores this fraction of the hit that led to it (less for older commits).
    """
    present = {h.chunk.commit for h in hits if h.chunk.kind == "commit"}
    wanted: dict[str, float] = {}
    for hit in hits[:from_top]:
        if hit.chunk.kind in HISTORY_KINDS:
            continue
        for rank, sha in enumerate(history_shas(hit.chunk)[:per_chunk]):
            if sha not in present:
                wanted[sha] = max(wanted.get(sha, 0.0), hit.score * decay * (1 - 0.1 * rank))
    if not wanted:
        return hits
    added = [Hit(chunk=c, score=wanted[c.commit]) for c in fetch(list(wanted)) if c.commit in wanted]
    return sorted(hits + added, key=lambda h: h.score, reverse=True)


def _to_chunk(obj: Any) -> Chunk:
    props = dict(obj.properties)
    return chunk_from_properties(str(obj.uuid), props.get("text") or "", props)


def fetch_commits(index: Any, shas: list[str]) -> list[Chunk]:
    """The commit chunks of these SHAs from a `WeaviateIndex` (what a code chunk's `history` links to)."""
    from weaviate.classes.query import Filter

    if not shas:
        return []
    response = index.collection.query.fetch_objects(
        filters=Filter.by_property("kind").equal("commit") & Filter.by_property("commit").contains_any(shas),
        limit=len(shas),
    )
    return [_to_chunk(obj) for obj in response.objects]


def fetch_diffs(index: Any, sha: str, limit: int = 200) -> list[Chunk]:
    """The diff chunks of one commit from a `WeaviateIndex` (what a "what changed" answer quotes from)."""
    from weaviate.classes.query import Filter

    response = index.collection.query.fetch_objects(
        filters=Filter.by_property("kind").equal("diff") & Filter.by_property("commit").equal(sha),
        limit=limit,
    )
    return sorted((_to_chunk(obj) for obj in response.objects), key=lambda c: (c.path, c.start_line, c.id))


def commits_of(hits: Sequence[Hit]) -> list[str]:
    """Distinct commits the hits cite, in rank order (history chunks only: a code chunk's pin is not an answer)."""
    out: list[str] = []
    for h in hits:
        if h.chunk.kind in HISTORY_KINDS and h.chunk.commit and h.chunk.commit not in out:
            out.append(h.chunk.commit)
    return out
