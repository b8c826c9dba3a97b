"""Data-test fixtures: the dataset under test (built from the mini index, or `--dataset DIR`) and its index."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.types import Chunk
from tests.integration.conftest import embedder, indexed  # noqa: F401  (the mini index, when no --dataset)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tqa data tests")
    group.addoption("--dataset", default=None, help="Check this dataset directory instead of building one.")
    group.addoption("--index-data-dir", default=None, help="TQA data dir of the index the dataset must trace to.")
    group.addoption("--min-pairs", type=int, default=1, help="Fewest pairs the dataset must hold.")
    group.addoption("--min-categories", type=int, default=1, help="Fewest categories the dataset must cover.")


@pytest.fixture(scope="session")
def dataset_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = request.config.getoption("--dataset", default=None)
    if given:
        return Path(given)
    from ml.dataset.build import build_dataset

    mini = request.getfixturevalue("indexed")
    out = tmp_path_factory.mktemp("dataset")
    build_dataset(mini.index.iter_chunks(), out, {"corpus": "transformers", "version": "test"})
    return out


@pytest.fixture(scope="session")
def index_chunks(request: pytest.FixtureRequest) -> list[Chunk]:
    data_dir = request.config.getoption("--index-data-dir", default=None)
    if data_dir:
        from ml.index.weaviate_index import WeaviateIndex
        from ml.settings import Settings

        with WeaviateIndex.open(Settings(data_dir=Path(data_dir))) as index:
            return list(index.iter_chunks())
    if request.config.getoption("--dataset", default=None):
        pytest.fail("--dataset needs --index-data-dir: traceability is checked against the index it was built from.")
    return list(request.getfixturevalue("indexed").index.iter_chunks())
