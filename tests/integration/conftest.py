"""Integration fixtures: a real embedded Weaviate on free ports, and a small real corpus indexed into it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml.index.embed import Embedder
from ml.index.ingest import IngestReport, ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.sources.corpus import Corpus
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for an isolated index: its own data dir and free Weaviate ports."""
    return Settings(
        data_dir=data_dir,
        weaviate_port=free_port(),
        weaviate_grpc_port=free_port(),
        **overrides,  # type: ignore[arg-type]
    )


@dataclass
class Indexed:
    settings: Settings
    corpus: Corpus
    index: WeaviateIndex
    embedder: Embedder
    report: IngestReport


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """One loaded embedding model for the whole session."""
    return Embedder()


@pytest.fixture(scope="session")
def indexed(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Indexed]:
    """A real embedded Weaviate with the mini corpus ingested; shared read-only by the session's tests."""
    base = tmp_path_factory.mktemp("corpus")
    corpus = make_mini_corpus(base)
    settings = make_settings(tmp_path_factory.mktemp("data"))
    index = WeaviateIndex.open(settings)
    state = StateStore(settings.state_db)
    try:
        report = ingest(corpus, index, state, embedder)
        yield Indexed(settings, corpus, index, embedder, report)
    finally:
        state.close()
        index.close()
