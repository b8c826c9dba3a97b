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
    """Whether the file at `rel_path` (relative to the tree's root) is indexed as code or docs.

    A model's `modular_*.py` is not: Transformers generates the `modeling_*.py` (and configuration, processing)
    files next to it from it, the code users import and read. Indexing both puts two copies of every class in the
    index, and the modular one crowds out the file a citation should point at (about a sixth of the package's code).
    """
    path = PurePosixPath(rel_path)
    if path.name.startswith("modular_") and "models" in path.parts:
        return False
    return path.suffix in INDEXED_SUFFIXES and not skip_dir(str(path.parent), doc_languages)
