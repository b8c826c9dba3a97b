"""Wires settings to the stages: the functions the CLI, the service and the tests call."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ml.errors import NoIndexError, UserError
from ml.index.embed import QueryBatcher, make_embedder
from ml.index.engine import IngestReport
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.sources.corpus import resolve_corpus

if TYPE_CHECKING:
    from ml.index.watch import Syncer


def run_ingest(
    settings: Settings,
    package: str | None = "transformers",
    path: Path | None = None,
    rebuild: bool = False,
    console: Console | None = None,
    repo_url: str | None = None,
) -> IngestReport:
    """Resolve the corpus, open the index and ingest with a progress bar.

    A git checkout goes through the history sync (`tqa sync`), so both commands build the same index: code pinned
    per file to the last commit that changed it, blame history, commit and diff chunks.
    """
    if path is not None and (Path(path) / ".git").exists():
        report = _ingest_checkout(settings, Path(path), rebuild, console, repo_url)
    else:
        corpus = resolve_corpus(package=package, path=path, doc_languages=settings.doc_languages)
        state = StateStore(settings.state_db)
        try:
            with WeaviateIndex.open(settings) as index:
                if rebuild:
                    index.drop()
                    state.clear()
                report = ingest(corpus, index, state, make_embedder(settings), progress=_progress_bar(console))
        finally:
            state.close()
    load_vocabulary(settings)  # built now, so the first question does not wait for it
    return report


def _ingest_checkout(
    settings: Settings, path: Path, rebuild: bool, console: Console | None, repo_url: str | None = None
) -> IngestReport:
    with ExitStack() as stack:
        syncer = open_syncer(stack, settings, path, rebuild=rebuild, repo_url=repo_url)
        reports = syncer.run(progress=(lambda msg: console.print(msg, style="dim")) if console else None)
        report = reports[0]
        for extra in reports[1:]:
            report.chunks_written += extra.chunks_written
            report.chunks_deleted += extra.chunks_deleted
            report.seconds += extra.seconds
        report.total_chunks = syncer.index.count()
        return report


def open_syncer(
    stack: ExitStack,
    settings: Settings,
    path: Path,
    github: bool | None = None,
    rebuild: bool = False,
    repo_url: str | None = None,
) -> Syncer:
    """A `Syncer` for the checkout at `path` and the configured index; what it opens is closed by `stack`.

    `tqa sync`, `tqa watch` and `tqa ingest --path <git checkout>` all come through here, so they build the same
    index, and the same checks as a plain ingest refuse a data dir built for another corpus or model. Links point at
    `repo_url` when given, else the GitHub `origin`, else TQA_GITHUB_REPO when set, else the checkout (`file://`).

    Raises:
        UserError: `path` is not a git checkout, GitHub is wanted without a token, or the data dir is incompatible.
    """
    from ml.index.engine import IndexSink, begin
    from ml.index.watch import Syncer
    from ml.sources.git_checkout import owner_repo_of
    from ml.sources.git_history import resolve

    repo = path.resolve()
    resolve(repo)  # a clear error for a path that is not a checkout
    explicit = settings.github_repo if "github_repo" in settings.model_fields_set else None
    owner_repo = owner_repo_of(repo, explicit, repo_url)
    if github is None:
        github = settings.github_token is not None
    token = settings.github_token.get_secret_value() if settings.github_token else None
    if github and settings.github_api_url == "https://api.github.com" and not token:
        raise UserError("Syncing GitHub issues needs TQA_GITHUB_TOKEN (or pass --no-github).")
    store = StateStore(settings.state_db)
    stack.callback(store.close)
    state = store.for_corpus(resolve_corpus(path=repo).name)
    embedder = make_embedder(settings)
    index = stack.enter_context(WeaviateIndex.open(settings))
    if rebuild:
        index.drop()
        state.clear()
    begin(state, state.corpus, str(repo), embedder.model_name)
    index.ensure_collection()
    client = None
    if github:
        from ml.sources.github import GitHubClient

        client = stack.enter_context(
            GitHubClient(settings.github_repo, token=token, api_url=settings.github_api_url, etags=state.etags())
        )
    return Syncer(
        repo,
        IndexSink(index, embedder),
        state,
        owner_repo,
        client,
        settings.staging_file,
        index=index,
        doc_languages=settings.doc_languages,
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
    require_index(settings)
    store = StateStore(settings.state_db)
    try:
        meta = {k: store.get_meta(k) for k in ("corpus", "corpus_version", "commit", "embedding_model", "ingested_at")}
        state = store.for_corpus(meta["corpus"] or "")
        files = len(state.files())
        history: dict[str, Any] = {}
        if state.get("head"):
            history = {"head": state.get("head"), "commits": len(state.commits())}
            if state.get("github_since"):
                history["github_since"] = state.get("github_since")
    finally:
        store.close()
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
        learned: bool = True,
    ):
        """`learned=False` opens without the learned ranker and confidence model (`tqa train ranker` makes them, so
        a stale pair must not stop it)."""
        from ml.answer.extractive import ExtractiveAnswerer
        from ml.answer.fallback import build_answerer
        from ml.retrieve import RetrievalConfig, Retriever
        from ml.retrieve_history import fetch_diffs

        self.settings = settings
        self._owns_index = index is None
        if index is None:
            require_index(settings)
            index = WeaviateIndex.open(settings)
        self.index = index
        if not self.index.exists():
            self.close()
            raise NoIndexError(settings.data_dir)
        self.embedder = make_embedder(settings)
        # A service embeds concurrent questions together; a CLI call has nobody to wait for.
        self._batcher = QueryBatcher(self.embedder) if batch_queries else None
        self.retriever = Retriever(
            index,
            self._batcher or self.embedder,  # type: ignore[arg-type]
            RetrievalConfig(alpha=settings.alpha, candidates=settings.candidates, ranker=settings.ranker),
            model=load_ranker(settings) if learned else None,
            families=corpus_families(settings),
        )
        self.vocabulary = load_vocabulary(settings)
        confidence = load_confidence(settings) if learned else None
        if confidence is not None:
            confidence.bind((self._batcher or self.embedder).embed_query, self.vocabulary)
        # TQA_ANSWERER=llm puts the LLM first, with the extractive answerer as its fallback.
        extractive = ExtractiveAnswerer(
            threshold=settings.abstain_threshold, model=confidence, diffs=lambda sha: fetch_diffs(index, sha)
        )
        self.answerer = answerer or build_answerer(settings, extractive)

    def warm_up(self) -> None:
        """Load the embedding model and touch the index so the first request is as fast as the rest."""
        self.retriever.search("warm up", k=1)

    def search(
        self, query: str, k: int = 10, kinds: list[str] | None = None, path_prefix: str | None = None
    ) -> list[Any]:
        text = validate_question(query, k)
        return self.retriever.search(text, k=k, kinds=kinds, path_prefix=path_prefix)

    def ask(self, question: str, k: int = 5, hits_out: list[Any] | None = None) -> Any:
        """Answer `question` from the top `k` hits; `hits_out`, when given, receives those hits (cited code)."""
        import time

        text = validate_question(question, k)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        hits = self.retriever.search(text, k=k, timings=timings)
        fetched = time.perf_counter()
        hits = with_bodies(self.index, hits)
        timings["body_ms"] = (time.perf_counter() - fetched) * 1000
        if hits_out is not None:
            hits_out.extend(hits)
        answer = self.answerer.answer(text, hits)
        answer.timings_ms = {**timings, **answer.timings_ms, "total_ms": (time.perf_counter() - started) * 1000}
        return answer

    def close(self) -> None:
        if getattr(self, "_batcher", None) is not None:
            self._batcher.close()
        if self._owns_index:
            self.index.close()


# Hits whose symbol's whole code can say more than the hit: a part of a split function, an argument entry or a
# usage example (the function or class they document), a function or method, a class (its methods' code).
BODY_KINDS = frozenset({"function", "method", "argument", "example", "class"})


def with_bodies(index: Any, hits: list[Any], top: int = 3) -> list[Any]:
    """The hits with `Hit.body` set for the top `top` code hits: one query fetches every part of their symbols, so
    the answer can quote the statements a hit's own lines lack (`WeaviateIndex.symbol_bodies`)."""
    keys = [(h.chunk.path, h.chunk.symbol) for h in hits[:top] if h.chunk.kind in BODY_KINDS and h.chunk.symbol]
    if not keys:
        return hits
    bodies = index.symbol_bodies(keys)
    out = []
    for n, hit in enumerate(hits):
        body = bodies.get((hit.chunk.path, hit.chunk.symbol)) if n < top and hit.chunk.kind in BODY_KINDS else None
        out.append(hit.model_copy(update={"body": body}) if body is not None else hit)
    return out


def load_ranker(settings: Settings) -> Any:
    """The learned re-ranker: the data dir's own (`tqa train ranker`) when there is one, else the shipped one."""
    from ml.rank import RankModel, default_model

    own = (settings.ranker_dir or settings.data_dir) / "ranker.json"
    return RankModel.load(own) if own.is_file() else default_model()


def load_confidence(settings: Settings) -> Any:
    """The calibrated confidence and abstention model: the data dir's own when trained there, else the shipped one.
    None (the heuristic confidence) when the learned ranker is off, since the model reads the ranker's scores."""
    from ml.answer.confidence import ConfidenceModel, default_confidence

    if not settings.ranker:
        return None
    own = (settings.ranker_dir or settings.data_dir) / "confidence.json"
    return ConfidenceModel.load(own) if own.is_file() else default_confidence()


def load_vocabulary(settings: Settings) -> Any:
    """The indexed tree's vocabulary (`ml.index.vocabulary`), built on first use after the indexed files changed;
    None when the index has no tree on this machine (a remote cluster)."""
    from ml.index.vocabulary import load_or_build

    if not settings.state_db.exists():
        return None
    store = StateStore(settings.state_db)
    try:
        root = store.get_meta("root")
        paths = list(store.for_corpus(store.get_meta("corpus") or "").files())
    finally:
        store.close()
    return load_or_build(settings.data_dir, Path(root) if root else None, paths, settings.doc_languages)


def corpus_families(settings: Settings) -> dict[str, str]:
    """Model family -> its folder's path prefix in the index, for the indexed package or checkout."""
    from ml.rank import family_prefixes

    if not settings.state_db.exists():
        return {}
    store = StateStore(settings.state_db)
    try:
        root = store.get_meta("root")
    finally:
        store.close()
    if not root:
        return {}
    path = Path(root)
    if (path / "models").is_dir():  # the package: paths start with its name
        return family_prefixes(path, f"{path.name}/")
    return family_prefixes(path / "src" / "transformers", "src/transformers/")


def require_index(settings: Settings) -> None:
    if not settings.weaviate_url and not settings.state_db.exists():
        raise NoIndexError(settings.data_dir)
