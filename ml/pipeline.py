"""Wires settings to the stages: the functions the CLI, the service and the tests call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from ml.errors import UserError
from ml.index.embed import Embedder, QueryBatcher
from ml.index.ingest import IngestReport, ingest
from ml.index.state import IngestState
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.sources.corpus import resolve_corpus


def make_embedder(settings: Settings) -> Embedder:
    return Embedder(
        settings.embedding_model, device=settings.embedding_device, batch_size=settings.embedding_batch_size
    )


def run_ingest(
    settings: Settings,
    package: str | None = "transformers",
    path: Path | None = None,
    rebuild: bool = False,
    console: Console | None = None,
) -> IngestReport:
    """Resolve the corpus, open the index and ingest with a progress bar.

    A git checkout goes through the history sync (`tqa sync`), so both commands build the same index: code pinned
    per file to the last commit that changed it, blame history, commit and diff chunks.
    """
    if path is not None and (Path(path) / ".git").exists():
        return _ingest_checkout(settings, Path(path), rebuild, console)
    corpus = resolve_corpus(package=package, path=path)
    state = IngestState(settings.state_db)
    try:
        with WeaviateIndex.open(settings) as index:
            if rebuild:
                index.drop()
                state.clear()
            return ingest(corpus, index, state, make_embedder(settings), progress=_progress_bar(console))
    finally:
        state.close()


def _ingest_checkout(settings: Settings, path: Path, rebuild: bool, console: Console | None) -> IngestReport:
    from contextlib import ExitStack

    from ml.index.sync import IndexSink, open_syncer

    with ExitStack() as stack:
        syncer = open_syncer(stack, settings, path, rebuild=rebuild)
        assert isinstance(syncer.sink, IndexSink)
        reports = syncer.run(progress=(lambda msg: console.print(msg, style="dim")) if console else None)
        git = reports[0]
        return IngestReport(
            files_seen=git.files_seen,
            files_changed=git.files_changed,
            files_deleted=git.files_deleted,
            chunks_written=sum(r.chunks_written for r in reports),
            chunks_deleted=sum(r.chunks_deleted for r in reports),
            seconds=sum(r.seconds for r in reports),
            total_chunks=syncer.sink.index.count(),
            commits_added=git.commits_added,
            commits_removed=git.commits_removed,
        )


def _progress_bar(console: Console | None) -> Any:
    if console is None:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[chunks]} chunks · {task.fields[rate]} chunks/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    state: dict[str, Any] = {"task": None, "started": None}

    def update(done: int, total: int, chunks: int) -> None:
        import time

        if state["task"] is None:
            bar.start()
            state["task"] = bar.add_task("ingest", total=total, chunks=0, rate="-")
            state["started"] = time.monotonic()
        elapsed = max(time.monotonic() - state["started"], 1e-6)
        bar.update(state["task"], completed=done, chunks=chunks, rate=f"{chunks / elapsed:.0f}")
        if done >= total:
            bar.stop()

    return update


def index_status(settings: Settings) -> dict[str, Any]:
    """Corpus, version and counts of the configured index."""
    if not settings.state_db.exists() and not settings.weaviate_url:
        raise UserError(f"No index in {settings.data_dir}; run `tqa ingest` first.")
    state = IngestState(settings.state_db)
    try:
        meta = {k: state.get_meta(k) for k in ("corpus", "corpus_version", "commit", "embedding_model", "ingested_at")}
        files = len(state.files())
    finally:
        state.close()
    history: dict[str, Any] = {}
    if not files and meta["corpus"]:
        from ml.index.sync import HistoryState

        synced = HistoryState(settings.state_db, meta["corpus"])
        try:
            files = len(synced.files())
            history = {"head": synced.get("head"), "commits": len(synced.commits())}
            if synced.get("github_since"):
                history["github_since"] = synced.get("github_since")
        finally:
            synced.close()
    with WeaviateIndex.open(settings) as index:
        out = {**meta, "files": files, "chunks": index.count(), "by_kind": index.counts_by_kind()}
        return {**out, "history": history} if history else out


MAX_QUESTION_BYTES = 4096
MAX_K = 50


class InvalidQuestion(UserError):
    """A question the service refuses; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def validate_question(question: str, k: int = 5) -> str:
    """The stripped question, or InvalidQuestion saying what to change."""
    text = (question or "").strip()
    if not text:
        raise InvalidQuestion("The question is empty; ask something about the Transformers repository.")
    if len(text.encode("utf-8")) > MAX_QUESTION_BYTES:
        raise InvalidQuestion(
            f"The question is longer than {MAX_QUESTION_BYTES} bytes; shorten it to the essential part.", status=413
        )
    if not 1 <= k <= MAX_K:
        raise InvalidQuestion(f"k must be between 1 and {MAX_K}.")
    return text


class QA:
    """The question-answering pipeline: index, embedder, retriever and answerer, opened once and reused."""

    def __init__(
        self,
        settings: Settings,
        index: WeaviateIndex | None = None,
        answerer: Any = None,
        batch_queries: bool = False,
    ):
        from ml.answer.extractive import ExtractiveAnswerer
        from ml.answer.fallback import build_answerer
        from ml.retrieve import RetrievalConfig, Retriever

        self.settings = settings
        self._owns_index = index is None
        if index is None:
            _require_index(settings)
            index = WeaviateIndex.open(settings)
        self.index = index
        if not self.index.exists():
            self.close()
            raise UserError(f"No index in {settings.data_dir}; run `tqa ingest` first.")
        self.embedder = make_embedder(settings)
        # A service embeds concurrent questions together; a CLI call has nobody to wait for.
        self._batcher = QueryBatcher(self.embedder) if batch_queries else None
        self.retriever = Retriever(
            index,
            self._batcher or self.embedder,  # type: ignore[arg-type]
            RetrievalConfig(alpha=settings.alpha, candidates=settings.candidates),
        )
        # TQA_ANSWERER=llm puts the LLM first, with the extractive answerer as its fallback.
        self.answerer = answerer or build_answerer(settings, ExtractiveAnswerer(threshold=settings.abstain_threshold))

    def warm_up(self) -> None:
        """Load the embedding model and touch the index so the first request is as fast as the rest."""
        self.retriever.search("warm up", k=1)

    def search(
        self, query: str, k: int = 10, kinds: list[str] | None = None, path_prefix: str | None = None
    ) -> list[Any]:
        text = validate_question(query, k)
        return self.retriever.search(text, k=k, kinds=kinds, path_prefix=path_prefix)

    def ask(self, question: str, k: int = 5) -> Any:
        import time

        text = validate_question(question, k)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        hits = self.retriever.search(text, k=k, timings=timings)
        answer = self.answerer.answer(text, hits)
        answer.timings_ms = {**timings, **answer.timings_ms, "total_ms": (time.perf_counter() - started) * 1000}
        return answer

    def close(self) -> None:
        if getattr(self, "_batcher", None) is not None:
            self._batcher.close()
        if self._owns_index:
            self.index.close()


def _require_index(settings: Settings) -> None:
    if not settings.weaviate_url and not settings.state_db.exists():
        raise UserError(f"No index in {settings.data_dir}; run `tqa ingest` first.")
