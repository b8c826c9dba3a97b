"""The ingest engine: bring the index in line with a source's files, crash-safe, embedding overlapped with writing.

A file source (`FileSource`) says which files exist in which version and turns files into chunks with stable ids:
the installed package or any directory (`ml.sources.corpus.Corpus`), or a git checkout at a commit
(`ml.sources.git_checkout.CheckoutSource`). `tqa ingest` (`ml.index.ingest`) and `tqa sync`/`tqa watch`
(`ml.index.git_sync`) are front doors to `index_files`; the history sync adds commits, issues and PRs through
`write_chunks`. Both record what is done in the one state store (`ml.index.state.StateStore`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ml.errors import UserError
from ml.index.embed import embedding_text
from ml.index.state import FileState, StateStore
from ml.sources.corpus import CHUNKER_VERSION, FileChunks
from ml.types import FILE_KINDS, Chunk

# Files chunked together (one `git log` for their pins and one blame pool for a checkout), and chunks embedded in
# one call; a batch is written when it holds BATCH_CHUNKS chunks or its files are all chunked.
BATCH_FILES = 200
BATCH_CHUNKS = 2048


@dataclass
class IngestReport:
    """What one run of a front door did; printed by the CLI and returned to tests and benchmarks."""

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
    # History: the recorded head before and after, and what entered or left it.
    old: str = ""
    new: str = ""
    force_push: bool = False
    commits_added: int = 0
    commits_removed: int = 0
    items_synced: int = 0
    # One entry per write, appended to the staging buffer the dataset pipeline reads (`ml.index.staging`).
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds else 0.0


class FileSource(Protocol):
    """Files to index: their current versions, and their chunks on demand."""

    def versions(self) -> tuple[dict[str, str], list[str]]:
        """Version of every indexed file by its cited path, and the paths that could not be read."""
        ...

    def chunks(self, paths: list[str]) -> Iterator[FileChunks]:
        """The chunks of these files (listed by `versions`), in order."""
        ...


class Sink(Protocol):
    """Where chunks go: the Weaviate index in the product (`IndexSink`), a dict in unit tests."""

    def embed(self, chunks: list[Chunk]) -> Any:
        """Vectors for `chunks` (called on the ingesting thread, while the previous batch is being written)."""
        ...

    def write(self, chunks: list[Chunk], vectors: Any) -> None: ...

    def delete(self, ids: Iterable[str]) -> int:
        """Delete by id; returns how many were stored."""
        ...

    def file_ids(self, paths: list[str]) -> set[str]:
        """Ids of the file chunks (not history chunks) stored under `paths`: the truth after an interrupted run."""
        ...


class IndexSink:
    """Embeds with an `Embedder` and stores in a `WeaviateIndex`."""

    def __init__(self, index: Any, embedder: Any) -> None:
        self.index, self.embedder = index, embedder

    def embed(self, chunks: list[Chunk]) -> Any:
        """Vectors for `chunks`; a chunk stored with the same embedding text keeps its stored vector.

        A sync re-chunks every file a new commit touched, and most of such a file's chunks only change their pin and
        blame history, not their text: re-embedding them was most of a per-commit sync's time.
        """
        texts = [embedding_text(c) for c in chunks]
        stored = self._stored([c.id for c in chunks]) if chunks else {}
        reused = {
            i: stored[c.id][1]
            for i, c in enumerate(chunks)
            if c.id in stored and embedding_text(stored[c.id][0]) == texts[i]
        }
        if not reused:
            return self.embedder.embed_documents(texts)
        vectors = np.zeros((len(chunks), next(iter(reused.values())).shape[0]), dtype=np.float32)
        for i, vector in reused.items():
            vectors[i] = vector
        todo = [i for i in range(len(chunks)) if i not in reused]
        if todo:
            vectors[todo] = self.embedder.embed_documents([texts[i] for i in todo])
        return vectors

    def _stored(self, ids: list[str]) -> dict[str, tuple[Chunk, np.ndarray]]:
        """The stored chunks among `ids` (text, kind, path and symbol only) with their vectors."""
        from weaviate.classes.query import Filter

        from ml.index.weaviate_index import chunk_from_properties

        out: dict[str, tuple[Chunk, np.ndarray]] = {}
        for start in range(0, len(ids), 1000):
            group = ids[start : start + 1000]
            response = self.index.collection.query.fetch_objects(
                filters=Filter.by_id().contains_any(group),
                limit=len(group),
                include_vector=True,
                return_properties=["text", "kind", "path", "symbol"],
            )
            for obj in response.objects:
                vector = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
                if vector:
                    props = dict(obj.properties)
                    out[str(obj.uuid)] = (
                        chunk_from_properties(str(obj.uuid), props.get("text") or "", props),
                        np.asarray(vector, dtype=np.float32),
                    )
        return out

    def write(self, chunks: list[Chunk], vectors: Any) -> None:
        self.index.upsert(chunks, vectors)

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        return self.index.delete_ids(ids) if ids else 0

    def file_ids(self, paths: list[str]) -> set[str]:
        return {i for ids in self.index.ids_for_paths(paths).values() for i in ids}


Progress = Callable[[int, int, int], None]  # (files done, files to do, chunks written)


def write_chunks(sink: Sink, chunks: list[Chunk]) -> None:
    """Embed and store chunks in one step (history chunks, which come in small batches)."""
    if chunks:
        sink.write(chunks, sink.embed(chunks))


def begin(state: StateStore, corpus: str, root: str, model_name: str) -> None:
    """Check the data dir indexes `corpus` with `model_name`, record both, and mark every file for re-chunking
    when the chunker changed since the last run.

    Raises:
        UserError: the data dir was built for another corpus or embedding model.
    """
    model = state.get_meta("embedding_model")
    if model is not None and model != model_name:
        raise UserError(
            f"The index was built with embedding model '{model}', not '{model_name}'; "
            "run `tqa ingest --rebuild` to re-embed everything."
        )
    name = state.get_meta("corpus")
    if name is not None and name != corpus:
        raise UserError(
            f"This data dir indexes '{name}', not '{corpus}'; use another TQA_DATA_DIR or `tqa ingest --rebuild`."
        )
    if state.get_meta("chunker_version") not in (None, CHUNKER_VERSION):
        # Chunks of unchanged files would differ from what the current chunker makes: forget their versions (not
        # their ids, which the re-chunk needs to delete what is stale). The new version is recorded by `finish`.
        state.record_files(FileState(f.path, "", f.chunk_ids) for f in state.files().values())
    state.set_meta({"corpus": corpus, "embedding_model": model_name, "root": root})


def finish(state: StateStore, corpus_version: str, commit: str) -> None:
    """Record what `tqa status` shows, after every file of the source is in the index."""
    from datetime import UTC, datetime

    state.set_meta(
        {
            "corpus_version": corpus_version,
            "commit": commit,
            "chunker_version": CHUNKER_VERSION,
            "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def index_files(
    source: FileSource,
    sink: Sink,
    state: StateStore,
    report: IngestReport,
    force: Collection[str] | None = (),
    progress: Progress | None = None,
) -> None:
    """Bring the index's file chunks in line with `source`; safe to interrupt at any point and run again.

    Files whose version differs from the recorded one, or that are in `force` (every file when `force` is None),
    are re-chunked; files no longer in the source lose their chunks. A file's state row is written only after its
    chunks are stored and its stale chunks deleted, so an interrupted run redoes exactly the unfinished files, and
    deterministic ids make the redo an upsert, never a duplicate.
    """
    known = state.files()
    current, unreadable = source.versions()
    report.unreadable.extend(unreadable)
    report.files_seen = len(current)

    removed = sorted(set(known) - set(current))
    if removed:
        # What the index holds under these paths counts too: an interrupted run may have written unrecorded ids.
        stale = sink.file_ids(removed) | {i for p in removed for i in known[p].chunk_ids}
        report.chunks_deleted += sink.delete(stale)
        state.forget_files(removed)
        report.files_deleted = len(removed)
        report.changes.append({"what": "files_deleted", "paths": removed, "ids": sorted(stale)})

    todo = [
        path
        for path, version in current.items()
        if force is None or path in force or path not in known or known[path].version != version
    ]
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

        def flush() -> None:
            nonlocal batch, writing
            flat = [c for f in batch for c in f.chunks]
            vectors = sink.embed(flat)
            finish_previous()
            writing = writer.submit(_store, batch, flat, vectors, sink, state, known, report)
            batch = []

        for start in range(0, len(todo), BATCH_FILES):
            for chunks in source.chunks(todo[start : start + BATCH_FILES]):
                if chunks.non_utf8:
                    report.non_utf8.append(chunks.path)
                if chunks.unparsable:
                    report.unparsable.append(chunks.path)
                batch.append(chunks)
                if sum(len(f.chunks) for f in batch) >= BATCH_CHUNKS:
                    flush()
            if batch:
                flush()
        finish_previous()


def _store(
    batch: list[FileChunks],
    chunks: list[Chunk],
    vectors: Any,
    sink: Sink,
    state: StateStore,
    known: dict[str, FileState],
    report: IngestReport,
) -> int:
    """Write one embedded batch, delete what it makes stale, then record its files as done; returns files done."""
    sink.write(chunks, vectors)
    paths = [f.path for f in batch]
    stored = sink.file_ids(paths)
    torn = [i for i, c in enumerate(chunks) if c.id not in stored and c.kind in FILE_KINDS]
    if torn:
        # A write cut short (a full disk) can leave an object stored without its filter and search entries, and
        # Weaviate does not re-index an object written again unchanged: delete those objects and write them anew.
        sink.delete(chunks[i].id for i in torn)
        sink.write([chunks[i] for i in torn], None if vectors is None else vectors[torn])
        stored = sink.file_ids(paths)
        if missing := [chunks[i].id for i in torn if chunks[i].id not in stored]:
            raise RuntimeError(f"{len(missing)} chunks written to Weaviate cannot be found by path, e.g. {missing[0]}.")
    # Whatever is stored or recorded under these paths but not produced now is stale: an old version or an
    # interrupted run.
    old = stored | {i for p in paths if p in known for i in known[p].chunk_ids}
    report.chunks_deleted += sink.delete(old - {c.id for c in chunks})
    state.record_files(FileState(f.path, f.version, [c.id for c in f.chunks]) for f in batch)
    report.chunks_written += len(chunks)
    report.changes.append({"what": "files_changed", "paths": paths, "ids": [c.id for c in chunks]})
    return len(batch)
