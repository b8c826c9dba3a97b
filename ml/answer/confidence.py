"""Confidence that means something: calibrated P(the answer cites the right symbol) and P(the question is in scope).

Both are logistic models over what the ranked hits look like for the question: the ranker's probabilities of the
top hits and the gap between them, the dense similarity, how much of the question the top hits cover, and how many
of the question's words appear in no candidate at all ("PyTorch Lightning's Trainer" shares `Trainer` with the
repository, `lightning` with nothing in it). Two signals read the question alone: a logistic model over its
embedding and the words it says, trained on users' Transformers questions against other tools' questions
(`text_scope`, its log-odds), and the words it uses that no indexed file contains or almost none do
(`ml.index.vocabulary`: "TorchServe", "Horovod"). P(correct) also reads what the extractive answer made of the hits
(`Evidence`): whether it found the usage example, argument entry or raise the question's kind asks for, and how
much of the question it quotes. P(correct) also learns from docstring questions the ranker was not trained on. They
are trained on the tuning half of the dev set, the tuning out-of-scope questions and the scope training questions
(`tqa train ranker`); the abstention threshold is chosen there, never on the test half.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.answer.units import intent
from ml.errors import UserError
from ml.rank import words
from ml.types import Hit

if TYPE_CHECKING:
    from ml.index.vocabulary import Vocabulary

FEATURES = [
    "bias", "p1", "p2", "margin", "dense", "coverage", "unmatched", "unmatched_any", "top_kind_code",
    "text_scope", "unseen", "rare", "p3", "p_any3",
]  # fmt: skip
# What P(correct) reads besides FEATURES: the answer the hits make. The scope model (abstention) reads FEATURES only.
ANSWER_FEATURES = ["same_file", "why", "answer_coverage", "lead_found", "named_in_question"]
# The text model's row: its bias, the question's embedding, then each of its training questions' words the question
# says, at this weight. The embedding places "PyTorch Lightning's Trainer" among the Trainer questions; the words
# learn that `lightning` names another library. Chosen by 10-fold cross-validation on the scope training questions.
TEXT_WORD_WEIGHT = 0.3


@dataclass(frozen=True)
class Evidence:
    """What the extractive answer made of the hits: the share of the question's words it quotes (`coverage`), and
    whether it found the lead the question's kind asks for (`lead`: a usage example for "how do I", an argument
    entry for "which default", a raise for an error)."""

    coverage: float
    lead: bool


def question_words(question: str) -> set[str]:
    return set(re.findall(r"[a-z][a-z0-9]+", question.lower()))


def text_row(vector: np.ndarray, question: str, vocabulary: list[str]) -> np.ndarray:
    """One row of the text model: 1, the question's embedding, and `TEXT_WORD_WEIGHT` for each `vocabulary` word
    it says (no words for a model trained on the embedding alone)."""
    said = question_words(question)
    return np.r_[1.0, vector, [TEXT_WORD_WEIGHT if w in said else 0.0 for w in vocabulary]]


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def features(
    question: str, hits: list[Hit], text_scope: float = 0.0, foreign: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """One row of FEATURES for a question and its ranked hits (scores are ranker probabilities); `text_scope` is the
    question-only model's log-odds of being in scope, `foreign` the vocabulary's (unseen words, rare share)."""
    q = set(words(question))
    scores = [h.score for h in hits[:3]] + [0.0, 0.0, 0.0]
    texts = [f"{h.chunk.symbol} {h.chunk.path} {h.chunk.text}" for h in hits]
    top = set(words(" ".join(texts[:3])))
    anywhere = set(words(" ".join(texts)))
    coverage = len(q & top) / len(q) if q else 0.0
    unmatched = len(q - anywhere)
    kind = hits[0].chunk.kind if hits else ""
    row = {
        "bias": 1.0,
        "p1": scores[0],
        "p2": scores[1],
        "margin": scores[0] - scores[1],
        "dense": max((h.dense for h in hits[:5]), default=0.0),
        "coverage": coverage,
        "unmatched": unmatched / len(q) if q else 1.0,
        "unmatched_any": 1.0 if unmatched else 0.0,
        "top_kind_code": 1.0 if kind in ("class", "function", "method", "argument", "example") else 0.0,
        "text_scope": text_scope,
        "unseen": foreign[0],
        "rare": foreign[1],
        "p3": scores[2],
        # An answer cites its top three: the chance at least one is right, were the ranker's scores independent.
        "p_any3": 1.0 - (1.0 - scores[0]) * (1.0 - scores[1]) * (1.0 - scores[2]),
    }
    return np.asarray([[row[f] for f in FEATURES]], dtype=np.float32)


def answer_features(question: str, hits: list[Hit], evidence: Evidence) -> np.ndarray:
    """One row of ANSWER_FEATURES: how many of the top three hits share the first one's file, whether the question
    asks why, the answer's evidence, and the share of the top symbol's name the question says."""
    files = [h.chunk.path for h in hits[:3]]
    name = set(words(hits[0].chunk.symbol)) if hits else set()
    row = {
        "same_file": sum(f == files[0] for f in files) / len(files) if files else 0.0,
        "why": 1.0 if intent(question) == "why" else 0.0,
        "answer_coverage": evidence.coverage,
        "lead_found": 1.0 if evidence.lead else 0.0,
        "named_in_question": len(set(words(question)) & name) / len(name) if name else 0.0,
    }
    return np.asarray([[row[f] for f in ANSWER_FEATURES]], dtype=np.float32)


@dataclass
class Logistic:
    weights: list[float]
    mean: list[float]
    scale: list[float]

    def probability(self, x: np.ndarray) -> float:
        z = (x[0] - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights)))))


@dataclass
class ConfidenceModel:
    """`correct`: P(a top-3 source is a gold symbol); `scope`: P(answerable); abstain below `threshold` of scope.
    `text`: P(in scope) from the question alone (`text_row`: its embedding and which of `text_words` it says), read
    through `embed` once `bind` gives one. A `correct`
    model trained with ANSWER_FEATURES (`reads_answer`) also reads what the answer made of the hits (`Evidence`)."""

    correct: Logistic
    scope: Logistic
    threshold: float
    text: Logistic | None = None
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    trained_on: dict[str, object] = field(default_factory=dict)
    text_words: list[str] = field(default_factory=list)
    embed: Callable[[str], np.ndarray] | None = field(default=None, repr=False, compare=False)
    vocabulary: Vocabulary | None = field(default=None, repr=False, compare=False)

    def bind(self, embed: Callable[[str], np.ndarray] | None, vocabulary: Vocabulary | None) -> ConfidenceModel:
        """Give the question-only signals what they read: the query embedder and the indexed tree's vocabulary.
        Unbound, both signals are neutral (log-odds 0, no foreign words)."""
        self.embed, self.vocabulary = embed, vocabulary
        return self

    def signals(self, question: str) -> tuple[float, tuple[float, float]]:
        """(text_scope log-odds, (unseen, rare)) for a question."""
        text = 0.0
        if self.text is not None and self.embed is not None:
            text = logit(self.text.probability(text_row(self.embed(question), question, self.text_words)[None, :]))
        foreign = self.vocabulary.foreign(question) if self.vocabulary is not None else (0.0, 0.0)
        return text, foreign

    def assess(
        self,
        question: str,
        hits: list[Hit],
        threshold: float | None = None,
        evidence: Callable[[], Evidence] | None = None,
    ) -> tuple[float, bool]:
        """(confidence, abstain) for a question and its ranked hits; `threshold` overrides the tuned one. `evidence`
        gives what the answer made of the hits, asked for only when the model reads it and does not abstain."""
        if not hits:
            return 0.0, True
        text, foreign = self.signals(question)
        x = features(question, hits, text, foreign)
        limit = self.threshold if threshold is None else threshold
        abstain = self.scope.probability(x) < limit
        if self.reads_answer:
            # An abstention composes no answer: its part of the row is what an empty answer shows.
            shown = evidence() if evidence is not None and not abstain else Evidence(coverage=0.0, lead=False)
            x = np.hstack([x, answer_features(question, hits, shown)])
        return round(self.correct.probability(x), 3), abstain

    @property
    def reads_answer(self) -> bool:
        return len(self.correct.weights) == len(FEATURES) + len(ANSWER_FEATURES)

    def save(self, path: Path) -> None:
        data = {
            "correct": self.correct.__dict__,
            "scope": self.scope.__dict__,
            "threshold": self.threshold,
            "text": self.text.__dict__ if self.text is not None else None,
            "text_words": self.text_words,
            "features": self.features,
            "answer_features": ANSWER_FEATURES if self.reads_answer else [],
            "trained_on": self.trained_on,
        }
        path.write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> ConfidenceModel:
        data = json.loads(path.read_text())
        if data["features"] != FEATURES or data.get("answer_features", []) not in ([], ANSWER_FEATURES):
            raise UserError(f"{path} was trained on other features; retrain it with `tqa train ranker`.")
        return cls(
            Logistic(**data["correct"]),
            Logistic(**data["scope"]),
            data["threshold"],
            Logistic(**data["text"]) if data.get("text") else None,
            data["features"],
            data["trained_on"],
            data.get("text_words", []),
        )


def default_confidence() -> ConfidenceModel | None:
    resource = resources.files("ml").joinpath("data/confidence.json")
    if not resource.is_file():
        return None
    return ConfidenceModel.load(Path(str(resource)))


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, standardize: bool = True) -> Logistic:
    """Logistic regression over `x` (column 0 is the bias, 1.0); standardized columns unless told otherwise."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    if not standardize:
        mean, scale = np.zeros_like(mean), np.ones_like(scale)
    mean[0], scale[0] = 0.0, 1.0
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000)
    model.fit((x - mean) / scale, y)
    return Logistic([float(w) for w in model.coef_[0]], [float(m) for m in mean], [float(s) for s in scale])


def auroc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def reliability(scores: list[float], labels: list[int], bins: int = 5) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per equal-width confidence bin, for a reliability plot."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(s, y) for s, y in zip(scores, labels, strict=True) if lo <= s < hi or (b == bins - 1 and s == 1.0)]
        if members:
            out.append(
                (sum(s for s, _ in members) / len(members), sum(y for _, y in members) / len(members), len(members))
            )
    return out
