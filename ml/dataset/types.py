"""Schemas of the QA dataset: one pair, the chunk it comes from, and the manifest that versions a build."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Category = Literal[
    "code_purpose",
    "code_arguments",
    "code_default",
    "class_members",
    "module_contents",
    "docs_section",
    "commit_why",
    "commit_file_change",
    "issue_resolution",
    "pr_change",
    "user_correction",
    "rated_answer",
]
Split = Literal["train", "eval"]


class SourceRef(BaseModel):
    """Where a pair comes from: the indexed chunk (by id) and how it is cited."""

    kind: str
    path: str = ""
    start_line: int = 0
    end_line: int = 0
    symbol: str = ""
    commit: str = ""
    issue: int | None = None
    pr: int | None = None
    url: str = ""
    chunk_id: str
    date: str = Field(default="", description="Commit, issue or PR time; used by the time split.")


class QAPair(BaseModel):
    """One question with its reference answer and the context that grounds it."""

    id: str
    category: Category
    question: str
    answer: str
    context: str
    source: SourceRef
    generator: str
    created_at: str
    persona: str = "developer"
    must_mention: list[str] = Field(default_factory=list, description="Terms a correct answer names.")
    split: Split = "train"


class Manifest(BaseModel):
    """What a dataset build contains and how it was made; `dataset_hash` identifies the version."""

    dataset_hash: str = Field(description="sha256 over every record (all fields but created_at) and the settings.")
    records: int
    counts: dict[str, dict[str, int]] = Field(description="split -> category -> pairs.")
    by_source_kind: dict[str, int]
    rejected: dict[str, int] = Field(description="Validation rejections by reason.")
    corpus: dict[str, str | int]
    generator: dict[str, str | int | float | bool]
    files: dict[str, str] = Field(description="File name -> sha256 of its bytes.")
    built_at: str
