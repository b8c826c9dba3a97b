"""Resolves what to index (the installed package or a checkout) and turns its files into chunks."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ml.errors import UserError
from ml.sources.docs import chunk_markdown
from ml.sources.python_code import Piece, chunk_python, module_name, text_windows
from ml.sources.selection import DEFAULT_DOC_LANGUAGES, DOC_SUFFIXES, PYTHON_SUFFIXES, is_indexed, skip_dir
from ml.types import Chunk, chunk_id

DEFAULT_REPO_URL = "https://github.com/huggingface/transformers"
# Bump when chunking changes what a file's chunks contain: ingest then re-chunks every file, not only changed ones.
CHUNKER_VERSION = "3"


@dataclass(frozen=True)
class Corpus:
    """What is indexed and how its files become citable paths and URLs."""

    name: str
    root: Path
    base: Path
    version: str
    commit: str = ""
    ref: str = ""
    repo_url: str = DEFAULT_REPO_URL
    repo_prefix: str = ""
    doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES

    def rel(self, path: Path) -> str:
        """Path as stored and cited: relative to `base`, with forward slashes."""
        return path.relative_to(self.base).as_posix()

    def url(self, rel_path: str, start: int = 0, end: int = 0) -> str:
        """A link pinned to the corpus version; line anchors when a range is known."""
        anchor = f"#L{start}-L{end}" if start and end else ""
        if not self.ref:
            return f"file://{(self.base / rel_path).as_posix()}{anchor}"
        return f"{self.repo_url}/blob/{self.ref}/{self.repo_prefix}{rel_path}{anchor}"

    def iter_files(self) -> Iterator[Path]:
        """The indexed files under the root (see `ml.sources.selection`), in a stable order."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            dirnames[:] = sorted(d for d in dirnames if not skip_dir(f"{rel_dir}/{d}", self.doc_languages))
            for name in sorted(filenames):
                if is_indexed(f"{rel_dir}/{name}", self.doc_languages):
                    yield Path(dirpath) / name

    # The corpus as a file source of the ingest engine (`ml.index.engine.FileSource`).
    def versions(self) -> tuple[dict[str, str], list[str]]:
        """Content hash of every indexed file by its cited path, and the paths that could not be read."""
        versions: dict[str, str] = {}
        unreadable: list[str] = []
        for path in self.iter_files():
            rel = self.rel(path)
            try:
                versions[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                unreadable.append(rel)
        return versions, unreadable

    def chunks(self, paths: list[str]) -> Iterator[FileChunks]:
        """The chunks of these files, in order; a file that vanished since `versions` has no chunks."""
        for rel in paths:
            try:
                data = (self.base / rel).read_bytes()
            except OSError:
                data = b""
            yield chunk_file(self, rel, data)


@dataclass
class FileChunks:
    """The chunks of one file and what happened while reading it."""

    path: str
    version: str  # content hash for a tree, blob SHA for a git commit: what the state store records
    chunks: list[Chunk] = field(default_factory=list)
    non_utf8: bool = False
    unparsable: bool = False


def resolve_corpus(
    package: str | None = None, path: Path | None = None, doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES
) -> Corpus:
    """The installed package (default `transformers`) or a directory; a git checkout pins URLs to its HEAD commit.

    Raises:
        UserError: the package is not installed or the path is not a directory.
    """
    if path is not None:
        return _checkout_corpus(Path(path), doc_languages)
    name = package or "transformers"
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"Python package '{name}' is not installed; install it or pass --path to a checkout.")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = ""
    ref = f"v{version}" if version and "dev" not in version else "main"
    return Corpus(name=name, root=root, base=root.parent, version=version, ref=ref, repo_prefix="src/")


def _checkout_corpus(path: Path, doc_languages: tuple[str, ...]) -> Corpus:
    if not path.exists():
        raise UserError(f"--path {path} does not exist; pass the directory of a repository checkout.")
    if not path.is_dir():
        raise UserError(f"--path {path} is a file; pass the directory of a repository checkout.")
    root = path.resolve()
    commit = _git(root, "rev-parse", "HEAD")
    repo_url = _github_url(_git(root, "remote", "get-url", "origin")) if commit else ""
    return Corpus(
        name=root.name,
        root=root,
        base=root,
        version=commit[:12] if commit else "",
        commit=commit,
        ref=commit if repo_url else "",
        repo_url=repo_url or DEFAULT_REPO_URL,
        doc_languages=doc_languages,
    )


def _git(root: Path, *args: str) -> str:
    """Output of a git command in `root`, or '' when it is not a git checkout (or git is missing)."""
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return ""
    if result.returncode != 0 or not (root / ".git").exists() and args[0] == "rev-parse":
        return ""
    return result.stdout.strip()


def _github_url(remote: str) -> str:
    """https URL of a GitHub remote given as https or ssh; '' for other hosts."""
    remote = remote.strip().removesuffix(".git")
    if remote.startswith("git@github.com:"):
        return "https://github.com/" + remote.split(":", 1)[1]
    if remote.startswith("https://github.com/"):
        return remote
    return ""


def decode(data: bytes) -> tuple[str, bool]:
    """Text of a file and whether it was not valid UTF-8 (then undecodable bytes are replaced, not dropped)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def chunk_file(corpus: Corpus, rel_path: str, data: bytes) -> FileChunks:
    """All chunks of one file, with deterministic ids and pinned URLs."""
    text, non_utf8 = decode(data)
    result = FileChunks(path=rel_path, version=hashlib.sha256(data).hexdigest(), non_utf8=non_utf8)
    suffix = Path(rel_path).suffix
    if suffix in PYTHON_SUFFIXES:
        module = module_name(rel_path)
        pieces = chunk_python(text, module)
        result.unparsable = bool(pieces) and all(p.kind == "text" for p in pieces) and bool(text.strip())
    elif suffix in DOC_SUFFIXES:
        pieces = chunk_markdown(text)
    else:
        pieces = text_windows(text.splitlines(), symbol=rel_path)
    seen: Counter[tuple[str, str, int]] = Counter()
    for piece in pieces:
        key = (piece.kind, piece.symbol, piece.part)
        occurrence = seen[key]
        seen[key] += 1
        # A repeated symbol (an @overload, a property setter) gets its own id instead of overwriting the first.
        symbol_key = piece.symbol if occurrence == 0 else f"{piece.symbol}#{occurrence}"
        result.chunks.append(_to_chunk(corpus, rel_path, piece, symbol_key))
    return result


def _to_chunk(corpus: Corpus, rel_path: str, piece: Piece, symbol_key: str) -> Chunk:
    return Chunk(
        id=chunk_id(corpus.name, rel_path, piece.kind, symbol_key, piece.part),
        kind=piece.kind,  # type: ignore[arg-type]
        text=piece.text,
        path=rel_path,
        start_line=piece.start_line,
        end_line=piece.end_line,
        symbol=piece.symbol,
        corpus_version=corpus.version,
        url=corpus.url(rel_path, piece.start_line, piece.end_line),
        commit=corpus.commit,
        parent_symbol=piece.parent_symbol,
        signature=piece.signature,
    )
