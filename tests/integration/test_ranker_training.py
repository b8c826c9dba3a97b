"""`tqa train ranker` on a real index: the models it writes load, and the retriever that uses them finds the family
a question names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.answer.confidence import ConfidenceModel
from ml.rank import FEATURES, RankModel
from ml.retrieve import Retriever
from ml.train.ranker import train_all
from tests.integration.conftest import Indexed

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_trained_ranker_and_confidence_load_and_rank(indexed: Indexed, tmp_path: Path) -> None:
    # Models trained on other features (an older version's) are what retraining replaces: they must not stop it.
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "ranker.json").write_text('{"weights": [0], "mean": [0], "scale": [1], "features": ["bias"]}')
    (stale / "confidence.json").write_text('{"features": ["bias"], "correct": {}, "scope": {}, "threshold": 0.5}')
    settings = indexed.settings.model_copy(update={"ranker_dir": stale})
    out = train_all(settings, tmp_path / "models", docstrings=20, say=lambda _: None)
    model = RankModel.load(out / "ranker.json")
    confidence = ConfidenceModel.load(out / "confidence.json")
    assert model.features == FEATURES and model.trained_on["positives"] > 0
    assert 0.0 < confidence.threshold < 1.0
    # The confidence model learns from how a ranker scores questions it was not fitted to, as a user's will be.
    assert confidence.trained_on["answerable"] >= 2
    assert confidence.trained_on["ranked_held_out"] == confidence.trained_on["answerable"]
    # P(correct) also reads what the answer made of the hits, composed from their bodies as `QA.ask` composes it.
    assert confidence.reads_answer
    # Docstring questions the ranker did not train on add rows to P(correct).
    assert confidence.trained_on["generated"] > 0

    families = {"mixtral": "transformers/models/mixtral/", "mistral": "transformers/models/mistral/",
                "llama": "transformers/models/llama/"}  # fmt: skip
    retriever = Retriever(indexed.index, indexed.embedder, model=model, families=families)
    hits = retriever.search("How does Mixtral send each token to its top experts?", k=5)
    assert hits[0].chunk.path.startswith("transformers/models/mixtral/")
    assert all(0.0 <= h.score <= 1.0 for h in hits)  # scores are the ranker's probabilities
    assert hits == sorted(hits, key=lambda h: -h.score)
