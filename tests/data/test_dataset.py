"""Data tests of a generated QA dataset: schema, size, traceability to the index, no train/eval leakage."""

from __future__ import annotations

import pytest

from ml.dataset.checks import leakage_problems, load_dataset, schema_problems, traceability_problems


def test_schema(dataset_dir):
    assert schema_problems(dataset_dir) == []


def test_size_and_categories(dataset_dir, request):
    manifest, splits = load_dataset(dataset_dir)
    categories = {p.category for pairs in splits.values() for p in pairs}
    assert manifest.records >= request.config.getoption("--min-pairs", default=1)
    assert len(categories) >= request.config.getoption("--min-categories", default=1)


@pytest.mark.integration
def test_every_pair_traces_to_an_indexed_chunk(dataset_dir, index_chunks):
    _, splits = load_dataset(dataset_dir)
    problems = traceability_problems([p for pairs in splits.values() for p in pairs], index_chunks)
    assert problems == [], problems[:5]


def test_no_leakage(dataset_dir):
    _, splits = load_dataset(dataset_dir)
    problems = leakage_problems(splits["train"], splits["eval"])
    assert problems == [], problems[:5]
