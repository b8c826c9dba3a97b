"""Which files of a tree are indexed: one rule set for the package walk, a checkout walk and a git tree."""

from __future__ import annotations

from pathlib import PurePosixPath

PYTHON_SUFFIXES = frozenset({".py"})
DOC_SUFFIXES = frozenset({".md", ".mdx"})
INDEXED_SUFFIXES = PYTHON_SUFFIXES | DOC_SUFFIXES
SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "build", "dist", ".venv", "venv", ".tox", ".eggs", "site-packages"}
)
DEFAULT_DOC_LANGUAGES = ("en",)


def skip_dir(rel_dir: str, doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES) -> bool:
    """Whether nothing under `rel_dir` (relative to the tree's root, forward slashes) is indexed."""
    parts = PurePosixPath(rel_dir).parts
    if any(p.startswith(".") or p in SKIP_DIRS for p in parts):
        return True
    # Transformers keeps translated docs in docs/source/<lang>; only the configured languages are indexed.
    return len(parts) >= 3 and parts[0] == "docs" and parts[1] == "source" and parts[2] not in doc_languages


def is_indexed(rel_path: str, doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES) -> bool:
    """Whether the file at `rel_path` (relative to the tree's root) is indexed as code or docs."""
    path = PurePosixPath(rel_path)
    return path.suffix in INDEXED_SUFFIXES and not skip_dir(str(path.parent), doc_languages)
