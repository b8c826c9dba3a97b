"""The learned re-ranker's features and model, and the calibrated confidence, on hand-made candidates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.answer.confidence import FEATURES as CONFIDENCE_FEATURES
from ml.answer.confidence import ConfidenceModel, Logistic, auroc, reliability
from ml.answer.units import quoted
from ml.errors import UserError
from ml.rank import FEATURES, Candidate, RankModel, asked_families, default_model, featurize, fit
from ml.types import Chunk, Hit

FAMILIES = {name: f"transformers/models/{name}/" for name in ("bloom", "bit", "gpt2", "gpt_neox", "opt", "llava")}


def hit(path: str, symbol: str, kind: str = "class", text: str = "", dense: float = 0.5) -> Hit:
    chunk = Chunk(id=f"{path}:{symbol}:{kind}", kind=kind, text=text or symbol, path=path, start_line=1, end_line=9,
                  symbol=symbol)  # fmt: skip
    return Hit(chunk=chunk, score=0.5, dense=dense)


def test_families_are_found_as_users_write_them_and_words_are_not_families() -> None:
    assert asked_families("How does BLOOM's ALiBi bias work?", FAMILIES) == ["bloom"]
    assert asked_families("how is the GPT-2 attention scaled", FAMILIES) == ["gpt2"]
    assert asked_families("rotary embeddings in gpt neox", FAMILIES)[0] == "gpt_neox"
    assert asked_families("How do I load a model in 4-bit?", FAMILIES) == []  # `bit` is a family and a word
    assert asked_families("What is the best opt-in flag?", FAMILIES) == []
    assert asked_families("Why does OPT use a learned position offset?", FAMILIES) == ["opt"]


def test_features_mark_the_asked_family_and_the_modular_copy() -> None:
    candidates = [
        Candidate(hit("transformers/models/bloom/modeling_bloom.py", "build_alibi_tensor", "function"), 0.9, 1),
        Candidate(hit("transformers/models/llava/modular_llava.py", "LlavaModel"), 0.8, 2),
        Candidate(hit("transformers/utils/generic.py", "ModelOutput"), 0.7, 3),
    ]
    x = featurize("How does BLOOM build its ALiBi tensor?", candidates, FAMILIES, ["bloom"])
    col = {name: x[:, i] for i, name in enumerate(FEATURES)}
    assert col["family_match"].tolist() == [1.0, 0.0, 0.0]
    assert col["family_other"].tolist() == [0.0, 1.0, 0.0]  # another family's folder while one was asked
    assert col["modular"].tolist() == [0.0, 1.0, 0.0]
    assert col["name_overlap"][0] > col["name_overlap"][2]


def test_a_getter_and_an_example_for_a_how_question_are_told_apart() -> None:
    getter = Candidate(
        hit("a.py", "Cfg.load_in_4bit", "method", "@property\ndef load_in_4bit(self):\n    return self._x")
    )
    example = Candidate(hit("a.py", "Cfg", "example", "model = Auto.from_pretrained(name, quantization_config=cfg)"))
    x = featurize("How do I load a model in 4-bit?", [getter, example], {}, [])
    col = {name: x[:, i] for i, name in enumerate(FEATURES)}
    assert col["getter"].tolist() == [1.0, 0.0] and col["how_x_example"].tolist() == [0.0, 1.0]


def test_a_quoted_message_is_read_out_of_the_question_and_its_search_rank_is_a_feature() -> None:
    assert quoted('I get "Asking to pad but the tokenizer does not have a padding token" with GPT-2') == (
        "Asking to pad but the tokenizer does not have a padding token"
    )
    assert quoted("Why doesn't the checkpoint's config load?") == ""  # apostrophes quote nothing
    raising = Candidate(hit("a.py", "Tok._pad", "method"), quoted_rank=1)
    other = Candidate(hit("a.py", "Tok", "class"), 0.9, 1)
    x = featurize('Where is "Asking to pad but the tokenizer has none" raised?', [raising, other], {}, [])
    col = {name: x[:, i] for i, name in enumerate(FEATURES)}
    assert col["quoted_rank"].tolist() == [0.5, 0.0]


def test_the_model_learns_a_signal_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES))).astype(np.float32)
    x[:, 0] = 1.0
    y = (x[:, FEATURES.index("family_match")] > 0.5).astype(int)
    groups = np.arange(400) // 10  # 40 questions of 10 candidates
    model = fit(x, y, groups)
    assert auroc(model.probability(x).tolist(), y.tolist()) > 0.95
    # Probabilities are calibrated across questions: about as many golds as the candidates' summed probability.
    assert abs(model.probability(x).sum() - y.sum()) < 0.1 * y.sum()
    # A question's weight counts: one contrary question is outvoted at equal weights and wins when it weighs most.
    flipped = y.copy()
    flipped[:10] = 1 - flipped[:10]
    equal = fit(x, flipped, groups).probability(x[:10])
    heavy = fit(x, flipped, groups, np.where(groups == 0, 1000.0, 1.0)).probability(x[:10])
    assert flipped[np.argmax(equal)] == 0 and flipped[np.argmax(heavy)] == 1  # its first candidate: a gold of its own
    model.save(tmp_path / "r.json")
    again = RankModel.load(tmp_path / "r.json")
    assert np.allclose(again.scores(x), model.scores(x))


def test_a_model_for_other_features_is_refused(tmp_path: Path) -> None:
    RankModel([0.0, 1.0], [0.0, 0.0], [1.0, 1.0], features=["bias", "old"]).save(tmp_path / "r.json")
    with pytest.raises(UserError, match="retrain"):
        RankModel.load(tmp_path / "r.json")


def test_the_shipped_ranker_matches_the_features() -> None:
    model = default_model()
    assert model is not None and model.features == FEATURES and len(model.weights) == len(FEATURES)


def test_auroc_and_reliability_are_right_on_known_cases() -> None:
    assert auroc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    bins = reliability([0.1, 0.15, 0.9, 0.95], [0, 0, 1, 1], bins=2)
    assert bins == [(0.125, 0.0, 2), (0.925, 1.0, 2)]


def test_confidence_abstains_below_the_scope_threshold(tmp_path: Path) -> None:
    n = len(CONFIDENCE_FEATURES)
    # Scope rises with p1 (the ranker's top probability); correctness with the margin.
    scope = Logistic([0.0] * n, [0.0] * n, [1.0] * n)
    scope.weights[CONFIDENCE_FEATURES.index("p1")] = 10.0
    model = ConfidenceModel(Logistic([0.0] * n, [0.0] * n, [1.0] * n), scope, threshold=0.9)
    strong, weak = hit("a.py", "A"), hit("b.py", "B")
    strong.score, weak.score = 0.95, 0.05
    assert model.assess("q", [strong, weak])[1] is False
    assert model.assess("q", [weak, weak])[1] is True
    assert model.assess("q", []) == (0.0, True)
    model.save(tmp_path / "c.json")
    assert ConfidenceModel.load(tmp_path / "c.json").assess("q", [strong, weak]) == model.assess("q", [strong, weak])


def test_the_question_only_signals_move_the_scope_once_bound(tmp_path: Path) -> None:
    from ml.index.vocabulary import Vocabulary

    n = len(CONFIDENCE_FEATURES)
    scope = Logistic([0.0] * n, [0.0] * n, [1.0] * n)
    scope.weights[CONFIDENCE_FEATURES.index("text_scope")] = 1.0
    scope.weights[CONFIDENCE_FEATURES.index("unseen")] = -5.0
    # The text model says "in scope" for vectors pointing along the first axis.
    text = Logistic([0.0, 8.0, -8.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    model = ConfidenceModel(Logistic([0.0] * n, [0.0] * n, [1.0] * n), scope, threshold=0.5, text=text)
    hits = [hit("a.py", "Trainer")]
    assert model.signals("anything") == (0.0, (0.0, 0.0))  # unbound: neutral
    vectors = {"train a model": np.array([1.0, 0.0]), "bake bread": np.array([0.0, 1.0])}
    vocabulary = Vocabulary(files={"train": 40, "model": 900, "bake": 0}, documents=1000)
    model.bind(vectors.__getitem__, vocabulary)
    assert model.assess("train a model", hits)[1] is False
    assert model.assess("bake bread", hits)[1] is True
    assert vocabulary.foreign("bake bread") == (2.0, 1.0)  # neither word is in any file
    model.save(tmp_path / "c.json")
    again = ConfidenceModel.load(tmp_path / "c.json").bind(vectors.__getitem__, vocabulary)
    assert again.assess("bake bread", hits) == model.assess("bake bread", hits)


def test_the_text_model_reads_the_words_a_question_says(tmp_path: Path) -> None:
    n = len(CONFIDENCE_FEATURES)
    scope = Logistic([0.0] * n, [0.0] * n, [1.0] * n)
    scope.weights[CONFIDENCE_FEATURES.index("text_scope")] = 1.0
    # Both questions embed alike (in scope); the word "lightning" says another library.
    text = Logistic([1.0, 2.0, 0.0, -40.0], [0.0] * 4, [1.0] * 4)
    words = ["keras", "lightning"]
    model = ConfidenceModel(Logistic([0.0] * n, [0.0] * n, [1.0] * n), scope, 0.5, text, text_words=words)
    model.bind(lambda _: np.array([1.0]), None)
    hits = [hit("a.py", "Trainer")]
    assert model.assess("How do I resume the Trainer?", hits)[1] is False
    assert model.assess("How do I resume the Lightning Trainer?", hits)[1] is True
    model.save(tmp_path / "c.json")
    again = ConfidenceModel.load(tmp_path / "c.json").bind(lambda _: np.array([1.0]), None)
    assert again.text_words == ["keras", "lightning"]
    assert again.assess("How do I resume the Lightning Trainer?", hits) == model.assess(
        "How do I resume the Lightning Trainer?", hits
    )
    # A file from before the text model read words reads the embedding alone.
    data = json.loads((tmp_path / "c.json").read_text())
    del data["text_words"]
    data["text"] = {"weights": [1.0, 2.0], "mean": [0.0, 0.0], "scale": [1.0, 1.0]}
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = ConfidenceModel.load(tmp_path / "old.json").bind(lambda _: np.array([1.0]), None)
    assert old.text_words == [] and old.assess("How do I resume the Lightning Trainer?", hits)[1] is False


def test_the_shipped_confidence_model_reads_every_signal() -> None:
    from ml.answer.confidence import default_confidence

    model = default_confidence()
    assert model is not None and model.features == CONFIDENCE_FEATURES and model.text is not None
    assert model.reads_answer  # P(correct) also reads what the answer found
    # bias + the packaged MiniLM's 384 dimensions + the words of the questions it was trained on
    assert len(model.text.weights) == 385 + len(model.text_words) and "lightning" in model.text_words
    assert model.trained_on["out_of_scope"] > 100 and model.trained_on["vocabulary_words"] > 0


def test_confidence_trained_on_answers_reads_what_the_answer_found(tmp_path: Path) -> None:
    from ml.answer.confidence import ANSWER_FEATURES, Evidence

    n, m = len(CONFIDENCE_FEATURES), len(ANSWER_FEATURES)
    correct = Logistic([0.0] * (n + m), [0.0] * (n + m), [1.0] * (n + m))
    correct.weights[n + ANSWER_FEATURES.index("lead_found")] = 3.0
    correct.weights[n + ANSWER_FEATURES.index("answer_coverage")] = 2.0
    model = ConfidenceModel(correct, Logistic([0.0] * n, [0.0] * n, [1.0] * n), threshold=0.5)
    hits = [hit("a.py", "Trainer")]
    found = model.assess("How do I train?", hits, evidence=lambda: Evidence(coverage=1.0, lead=True))[0]
    missed = model.assess("How do I train?", hits, evidence=lambda: Evidence(coverage=0.0, lead=False))[0]
    assert model.reads_answer and found > 0.9 and missed == 0.5
    model.save(tmp_path / "c.json")
    again = ConfidenceModel.load(tmp_path / "c.json")
    assert (
        again.reads_answer and again.assess("How do I train?", hits, evidence=lambda: Evidence(1.0, True))[0] == found
    )


def test_a_confidence_file_without_answer_features_still_loads_and_reads_hits_only(tmp_path: Path) -> None:
    from ml.answer.confidence import Evidence

    n = len(CONFIDENCE_FEATURES)
    model = ConfidenceModel(Logistic([0.0] * n, [0.0] * n, [1.0] * n), Logistic([0.0] * n, [0.0] * n, [1.0] * n), 0.5)
    model.save(tmp_path / "old.json")
    old = ConfidenceModel.load(tmp_path / "old.json")
    assert not old.reads_answer
    assert old.assess("q", [hit("a.py", "A")], evidence=lambda: Evidence(1.0, True))[0] == 0.5
    data = (tmp_path / "old.json").read_text().replace('"answer_features": []', '"answer_features": ["lead"]')
    (tmp_path / "other.json").write_text(data)
    with pytest.raises(UserError, match="retrain it with `tqa train ranker`"):
        ConfidenceModel.load(tmp_path / "other.json")
