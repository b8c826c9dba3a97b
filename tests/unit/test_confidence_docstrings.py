"""The docstring questions the confidence model learns from are ones the ranker was not trained on."""

from __future__ import annotations

from pathlib import Path

from ml.eval.retrieval import docstring_queries
from ml.train.ranker import TRAIN_DOCSTRING_SEED, confidence_docstrings
from tests.support.corpus import make_mini_corpus


def test_confidence_questions_are_held_out_from_the_ranker(tmp_path: Path) -> None:
    corpus = make_mini_corpus(tmp_path)
    trained = {q.question for q in docstring_queries(corpus, n=30, seed=TRAIN_DOCSTRING_SEED)}
    held_out = confidence_docstrings(corpus, 30)
    assert len(held_out) == 30
    assert not trained & {q.question for q in held_out}
    assert [q.question for q in confidence_docstrings(corpus, 30)] == [q.question for q in held_out]  # reproducible
    # Only questions whose gold file the index holds.
    kept = confidence_docstrings(corpus, 30, keep=lambda q: "/generation/" not in q.path)
    assert kept and all("/generation/" not in q.path for q in kept)
    assert any("/generation/" in q.path for q in held_out)
    assert confidence_docstrings(corpus, 0) == []
