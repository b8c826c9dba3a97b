"""`tqa ingest` of a directory tree (the installed package or a checkout without git) through the ingest engine."""

from __future__ import annotations

import time

from ml.index.embed import Embedder
from ml.index.engine import IndexSink, IngestReport, Progress, begin, finish, index_files
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.sources.corpus import Corpus


def ingest(
    corpus: Corpus,
    index: WeaviateIndex,
    state: StateStore,
    embedder: Embedder,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the index in line with the corpus: only changed files are re-chunked and re-embedded, chunks of removed
    files are deleted; safe to interrupt at any point and run again.

    Raises:
        UserError: the data dir was built for another corpus or embedding model.
    """
    started = time.monotonic()
    report = IngestReport()
    state = state.for_corpus(corpus.name)
    begin(state, corpus.name, str(corpus.root), embedder.model_name)
    index.ensure_collection()
    index_files(corpus, IndexSink(index, embedder), state, report, progress=progress)
    finish(state, corpus.version, corpus.commit)
    report.total_chunks = index.count()
    report.seconds = time.monotonic() - started
    return report
