"""A small QA dataset built straight from corpus chunks (no index needed) and the tiny Qwen2, for generator training."""

from __future__ import annotations

from pathlib import Path

from ml.dataset.build import build_dataset
from ml.sources.corpus import Corpus
from tests.support.corpus import make_mini_corpus

# A few small modules: enough pairs for a few training steps, quick to chunk.
TRAIN_FILES = ["utils/deprecation.py", "utils/doc.py", "trainer_utils.py", "generation/stopping_criteria.py"]


def corpus_chunks(corpus: Corpus) -> list:
    paths = sorted(corpus.versions()[0])
    return [chunk for fc in corpus.chunks(paths) for chunk in fc.chunks]


def tiny_dataset(base: Path, files: list[str] = TRAIN_FILES) -> Path:
    """A dataset directory (train.jsonl, eval.jsonl, manifest.json) generated from `files` of transformers."""
    corpus = make_mini_corpus(base / "corpus", files)
    out = base / "dataset"
    build_dataset(corpus_chunks(corpus), out, {"corpus": "transformers", "version": "test"})
    return out
