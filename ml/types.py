"""Schemas shared by every stage: chunks, search hits, citations and answers."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

ChunkKind = Literal[
    "module", "class", "function", "method", "argument", "example", "text", "doc", "commit", "diff", "issue", "pr"
]
# Chunks of a file of the corpus (owned by the file pass of an ingest) and chunks of the history (commits, their
# diffs, issues and PRs). Diff and review chunks also carry file paths, so file-level cleanup filters by kind.
FILE_KINDS: tuple[str, ...] = ("module", "class", "function", "method", "argument", "example", "text", "doc")
HISTORY_KINDS: tuple[str, ...] = ("commit", "diff", "pr", "issue")

# Fixed namespace so a chunk's id depends only on its identity, never on the machine or the run.
CHUNK_NAMESPACE = uuid.UUID("6f1c2a0e-3b7d-5c4e-9a1f-7d2b8e4c6a10")


def chunk_id(corpus: str, path: str, kind: str, symbol: str, part: int) -> str:
    """Deterministic chunk id, so re-ingesting the same source upserts instead of duplicating."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{corpus}\x1f{path}\x1f{kind}\x1f{symbol}\x1f{part}"))


class Chunk(BaseModel):
    """One retrievable unit of the repository: a symbol, a doc section, a commit, an issue thread."""

    id: str
    kind: ChunkKind
    text: str
    path: str = Field(
        description="Relative to the corpus root's parent, e.g. transformers/models/llama/modeling_llama.py."
    )
    start_line: int = 0
    end_line: int = 0
    symbol: str = ""
    corpus_version: str = ""
    url: str = ""
    commit: str = ""
    issue: int | None = None
    pr: int | None = None
    parent_symbol: str = ""
    signature: str = ""
    date: str = Field(default="", description="ISO 8601 time of a commit, issue or PR chunk.")
    history: list[str] = Field(
        default_factory=list,
        description="Commits that last changed this chunk's lines, most recent first, as 'sha' or 'sha#pr'.",
    )


class Hit(BaseModel):
    """A chunk returned by retrieval with its final score."""

    chunk: Chunk
    score: float
    dense: float = Field(default=0.0, description="Cosine similarity between the query and the chunk.")
    body: Chunk | None = Field(
        default=None,
        description="The code of the symbol the chunk belongs to (a split function joined, the function an argument "
        "or example documents), when the pipeline fetched it for the answer.",
    )


class SearchResult(BaseModel):
    """One ranked chunk as `/search`, `tqa search` and their batch contract return it."""

    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    score: float
    url: str

    @classmethod
    def of(cls, hit: Hit) -> SearchResult:
        c = hit.chunk
        return cls(
            path=c.path,
            start_line=c.start_line,
            end_line=c.end_line,
            symbol=c.symbol,
            kind=c.kind,
            score=round(hit.score, 4),
            url=c.url,
        )


class Source(BaseModel):
    """A numbered citation in an answer."""

    n: int
    kind: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    url: str
    commit: str = ""
    issue: int | None = None
    pr: int | None = None


class Verification(BaseModel):
    """What citation checking did to a generated answer before it was returned."""

    outcome: Literal["verified", "dropped_unsupported", "fell_back", "abstained"]
    kept: int = Field(description="Sentences kept, each supported by the source it cites.")
    dropped: list[str] = Field(default_factory=list, description="Sentences removed as unsupported or miscited.")
    invalid_citations: list[int] = Field(default_factory=list, description="Cited [n] with no such source.")


class Answer(BaseModel):
    """An answer with numbered citations; `abstained` answers carry no claims."""

    answer: str
    confidence: float
    abstained: bool
    sources: list[Source]
    timings_ms: dict[str, float] = Field(default_factory=dict)
    answerer: str = "extractive"
    fallback: str | None = None
    verification: Verification | None = None
