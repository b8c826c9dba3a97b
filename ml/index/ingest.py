"""Ingest: hash files, re-chunk and embed only what changed, upsert, delete what is gone, then record state."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml.errors import UserError
from ml.index.embed import Embedder, embedding_text
from ml.index.state import FileState, IngestState
from ml.index.weaviate_index import WeaviateIndex
from ml.sources.corpus import CHUNKER_VERSION, Corpus, FileChunks, chunk_file
from ml.types import Chunk

BATCH_CHUNKS = 2048


@dataclass
class IngestReport:
    """What an ingest run did; printed by the CLI and returned to tests and benchmarks."""

    files_seen: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    non_utf8: list[str] = field(default_factory=list)
    unparsable: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0
    total_chunks: int = 0
    commits_added: int = 0
    commits_removed: int = 0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds else 0.0


Progress = Callable[[int, int, int], None]  # (files done, files to do, chunks written)


def ingest(
    corpus: Corpus,
    index: WeaviateIndex,
    state: IngestState,
    embedder: Embedder,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the index in line with the corpus; safe to interrupt at any point and run again.

    A file's state row is written only after its chunks are stored and its stale chunks deleted, so an interrupted
    run redoes exactly the unfinished files; deterministic ids make the redo an upsert, never a duplicate.
    """
    started = time.monotonic()
    report = IngestReport()
    _check_compatible(state, corpus, embedder)
    index.ensure_collection()
    state.set_meta({"corpus": corpus.name, "embedding_model": embedder.model_name, "root": str(corpus.root)})

    known = state.files()
    if state.get_meta("chunker_version") not in (None, CHUNKER_VERSION):
        # Chunks of unchanged files would differ from what the current chunker makes: redo every file.
        known = {path: FileState(path, "", f.chunk_ids) for path, f in known.items()}
    current: dict[str, Path] = {}
    for path in corpus.iter_files():
        current[corpus.rel(path)] = path
    report.files_seen = len(current)

    removed = sorted(set(known) - set(current))
    if removed:
        stored = index.ids_for_paths(removed)
        report.chunks_deleted += index.delete_ids({i for ids in stored.values() for i in ids})
        state.forget(removed)
        report.files_deleted = len(removed)

    todo: list[tuple[str, bytes, str]] = []
    for rel, path in current.items():
        try:
            data = path.read_bytes()
        except OSError:
            report.unreadable.append(rel)
            continue
        digest = hashlib.sha256(data).hexdigest()
        if known.get(rel) is None or known[rel].sha256 != digest:
            todo.append((rel, data, digest))
    report.files_changed = len(todo)

    if progress:
        progress(0, len(todo), 0)
    # Embedding (torch) and storing (Weaviate) overlap: batch N is written while batch N+1 is embedded. Writes stay
    # in order, one at a time, and a batch's state is recorded only after its own write succeeded.
    done = 0
    writing: Future[int] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as writer:

        def finish_previous() -> None:
            nonlocal done, writing
            if writing is not None:
                done += writing.result()
                writing = None
                if progress:
                    progress(done, len(todo), report.chunks_written)

        batch: list[FileChunks] = []
        pending = 0
        for position, (rel, data, _) in enumerate(todo):
            chunks = chunk_file(corpus, rel, data)
            if chunks.non_utf8:
                report.non_utf8.append(rel)
            if chunks.unparsable:
                report.unparsable.append(rel)
            batch.append(chunks)
            pending += len(chunks.chunks)
            if pending >= BATCH_CHUNKS or position == len(todo) - 1:
                flat = [c for f in batch for c in f.chunks]
                vectors = embedder.embed_documents([embedding_text(c) for c in flat])
                finish_previous()
                writing = writer.submit(_store, batch, flat, vectors, index, state, report)
                batch, pending = [], 0
        finish_previous()

    state.set_meta(
        {
            "corpus_version": corpus.version,
            "commit": corpus.commit,
            "chunker_version": CHUNKER_VERSION,
            "ingested_at": _now(),
        }
    )
    report.total_chunks = index.count()
    report.seconds = time.monotonic() - started
    return report


def _store(
    batch: list[FileChunks],
    chunks: list[Chunk],
    vectors: np.ndarray,
    index: WeaviateIndex,
    state: IngestState,
    report: IngestReport,
) -> int:
    """Write one embedded batch, delete what it makes stale, then record its files as done; returns files done."""
    index.upsert(chunks, vectors)
    # Whatever is stored under these paths but not produced now is stale: an old version or an interrupted run.
    stored = index.ids_for_paths([f.path for f in batch])
    fresh = {c.id for c in chunks}
    stale = {i for ids in stored.values() for i in ids} - fresh
    report.chunks_deleted += index.delete_ids(stale)
    state.record(FileState(f.path, f.sha256, [c.id for c in f.chunks]) for f in batch)
    report.chunks_written += len(chunks)
    return len(batch)


def _check_compatible(state: IngestState, corpus: Corpus, embedder: Embedder) -> None:
    model = state.get_meta("embedding_model")
    if model is not None and model != embedder.model_name:
        raise UserError(
            f"The index was built with embedding model '{model}', not '{embedder.model_name}'; "
            "run `tqa ingest --rebuild` to re-embed everything."
        )
    name = state.get_meta("corpus")
    if name is not None and name != corpus.name:
        raise UserError(
            f"This data dir indexes '{name}', not '{corpus.name}'; use another TQA_DATA_DIR or `tqa ingest --rebuild`."
        )


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
