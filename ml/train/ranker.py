"""Train the learned re-ranker on questions with known gold symbols, through the real retriever and index.

Training questions: the tuning half of the hand-written dev set (never its test half) and questions made from
docstrings (the first sentence of a symbol's docstring asks for it without naming it, the way users describe
behaviour). Every candidate the retriever finds for a question is one example, labelled by whether it is a gold
symbol; the model is linear over `ml.rank.FEATURES`, fitted listwise (`ml.rank.fit`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.eval.retrieval import Gold, Query, Result, docstring_queries, first_rank, resolve_gold
from ml.rank import FEATURES, RankModel, fit
from ml.retrieve import Retriever
from ml.settings import Settings
from ml.sources.corpus import Corpus
from ml.types import Hit

if TYPE_CHECKING:
    from ml.answer.confidence import ConfidenceModel, Evidence, Logistic
    from ml.index.vocabulary import Vocabulary

# Docstring questions used for training are drawn with another seed than the evaluation's docstring set; those the
# confidence model reads with a third, and never one the ranker was trained on.
TRAIN_DOCSTRING_SEED = 7
CONFIDENCE_DOCSTRING_SEED = 101
DEV_WEIGHT = 3  # a hand-written question counts as this many generated ones


@dataclass
class Examples:
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    weights: np.ndarray


def golds_of(corpus: Corpus, query: Query) -> list[Gold]:
    refs = [(query.path, query.symbol), *((a.path, a.symbol) for a in query.alt)]
    return [g for g in (resolve_gold(corpus, p, s) for p, s in refs) if g is not None]


def examples(retriever: Retriever, corpus: Corpus, queries: list[Query], weight: int = 1) -> Examples:
    """Features and labels of every candidate of every query whose gold resolves."""
    from ml.rank import featurize

    xs, ys, groups = [], [], []
    for q in queries:
        golds = golds_of(corpus, q)
        if not golds:
            continue
        vector = retriever.embedder.embed_query(q.question)
        candidates, asked = retriever.candidates(q.question, vector)
        if not candidates:
            continue
        x = featurize(q.question, candidates, retriever.families, asked)
        y = [1 if first_rank([_result(c.hit)], golds) == 1 else 0 for c in candidates]
        xs.append(x)
        ys.extend(y)
        groups.extend([f"{q.id}"] * len(y))
    if not xs:
        empty = np.zeros(0)
        return Examples(np.zeros((0, len(FEATURES)), dtype=np.float32), empty.astype(int), empty.astype(str), empty)
    return Examples(np.vstack(xs), np.asarray(ys), np.asarray(groups), np.full(len(ys), float(weight)))


def _result(hit) -> Result:  # noqa: ANN001
    c = hit.chunk
    return Result(path=c.path, start_line=c.start_line, end_line=c.end_line, symbol=c.symbol)


def confidence_docstrings(corpus: Corpus, n: int, keep: Callable[[Query], bool] = lambda _: True) -> list[Query]:
    """`n` docstring questions the ranker (trained on `n` of them) has not seen, for the confidence model: ranked by
    the shipped ranker they are held out, as a user's question is."""
    import random

    if n <= 0:
        return []
    trained = {q.question for q in docstring_queries(corpus, n=n, seed=TRAIN_DOCSTRING_SEED)}
    fresh = [q for q in docstring_queries(corpus, n=2 * n, seed=CONFIDENCE_DOCSTRING_SEED) if q.question not in trained]
    fresh = [q for q in fresh if keep(q)]
    return random.Random(CONFIDENCE_DOCSTRING_SEED).sample(fresh, min(n, len(fresh)))


def train_with_held_out(
    retriever: Retriever,
    corpus: Corpus,
    dev: list[Query],
    docstrings: int = 400,
    say: Callable[[str], None] = lambda _: None,
    indexed: set[str] | None = None,
    folds: int = 5,
) -> tuple[RankModel, dict[str, RankModel]]:
    """Fit the ranker on the given dev questions (the tuning half) plus `docstrings` generated ones; with `indexed`,
    only questions whose gold file is in the index (a question nothing can answer teaches no ranking). Also, for
    each dev question, a ranker fitted without it (`folds` folds of the dev questions, the generated ones always
    in): its question text -> that ranker. A model scored on the questions it was fitted to
    ranks them better than it will rank a new one, so whatever learns from its scores (the confidence model) reads
    them held out."""

    def keep(q: Query) -> bool:
        return indexed is None or q.path in indexed

    generated = [q for q in docstring_queries(corpus, n=docstrings, seed=TRAIN_DOCSTRING_SEED) if keep(q)]
    dev = [q for q in dev if keep(q)]
    say(f"candidates for {len(dev)} dev and {len(generated)} docstring questions")
    parts = [examples(retriever, corpus, dev, DEV_WEIGHT), examples(retriever, corpus, generated)]
    data = Examples(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "groups", "weights")))
    if not data.y.sum():
        raise ValueError("No training question has its gold symbol among the candidates; is the corpus indexed?")
    model = fit(data.x, data.y, data.groups, data.weights)
    model.trained_on.update({"dev_questions": len(dev), "docstring_questions": len(generated)})
    held_out: dict[str, RankModel] = {}
    folds = min(folds, len(dev))
    if folds >= 2:
        order = np.random.default_rng(0).permutation(len(dev))
        for fold in range(folds):
            out = {dev[i].id for i in order[fold::folds]}
            rows = ~np.isin(data.groups, list(out))
            if data.y[rows].sum():
                fold_model = fit(data.x[rows], data.y[rows], data.groups[rows], data.weights[rows])
                held_out.update({q.question: fold_model for q in dev if q.id in out})
    return model, held_out


def train_all(
    settings: Settings, out_dir: Path | None = None, docstrings: int = 400, say: Callable[[str], None] = print
) -> Path:
    """`tqa train ranker`: the ranker, then the confidence model on its rankings, saved in `out_dir` (default: the
    data dir, where `QA` picks them up over the shipped ones). Only the tuning halves are read."""
    from ml.answer.extractive import ExtractiveAnswerer
    from ml.eval.retrieval import dev_queries, out_of_scope_questions, scope_training_questions
    from ml.eval.suite import index_corpus
    from ml.index.state import StateStore
    from ml.pipeline import QA, with_bodies

    out = out_dir or settings.data_dir
    out.mkdir(parents=True, exist_ok=True)
    corpus = index_corpus(settings)
    qa = QA(settings, learned=False)
    try:
        retriever = qa.retriever
        store = StateStore(settings.state_db)
        try:
            indexed = set(store.for_corpus(store.get_meta("corpus") or "").files()) or None
        finally:
            store.close()
        model, held_out = train_with_held_out(retriever, corpus, dev_queries("tune"), docstrings, say, indexed)
        model.save(out / "ranker.json")
        say(f"ranker: {model.trained_on}")
        retriever.model = model
        answerable = [q for q in dev_queries("tune") if indexed is None or q.path in indexed]
        extra_in, extra_out = scope_training_questions()
        generated = confidence_docstrings(corpus, docstrings, lambda q: indexed is None or q.path in indexed)
        confidence = train_confidence(
            retriever,
            corpus,
            answerable,
            out_of_scope_questions("tune") + extra_out,
            extra_in_scope=extra_in,
            vocabulary=qa.vocabulary,
            rankers=held_out,
            evidence=lambda question, hits: ExtractiveAnswerer().evidence(question, with_bodies(qa.index, hits)),
            generated=generated,
        )
        confidence.save(out / "confidence.json")
        say(f"confidence: {confidence.trained_on}, abstain below in-scope probability {confidence.threshold:.3f}")
    finally:
        qa.close()
    return out


def _held_out_probabilities(x: np.ndarray, y: np.ndarray, folds: int, seed: int = 0) -> list[float]:
    """Each row's P(y=1) from a logistic model (`fit_logistic`) fitted on the other folds (stratified); in-sample
    when there are too few rows of a class to fold."""
    from sklearn.model_selection import StratifiedKFold

    from ml.answer.confidence import fit_logistic

    if folds < 2:
        model = fit_logistic(x, y)
        return [model.probability(row[None, :]) for row in x]
    out = np.zeros(len(y))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
        model = fit_logistic(x[train], y[train])
        out[test] = [model.probability(row[None, :]) for row in x[test]]
    return [float(p) for p in out]


def train_confidence(
    retriever: Retriever,
    corpus: Corpus,
    dev: list[Query],
    out_of_scope: list[str],
    false_abstention: float = 0.03,
    k: int = 5,
    extra_in_scope: list[str] | None = None,
    vocabulary: Vocabulary | None = None,
    rankers: dict[str, RankModel] | None = None,
    evidence: Callable[[str, list[Hit]], Evidence] | None = None,
    generated: list[Query] | None = None,
) -> ConfidenceModel:
    """Fit P(correct) on the dev questions and P(in scope) on them and `extra_in_scope` against the out-of-scope
    ones, through the ranked retriever with the `k` hits an answer reads (`QA.ask`'s default). The question-only
    text model is fitted on the same questions; the other two read its out-of-fold log-odds, so they learn how far
    to trust it on questions it did not see. The abstention threshold lets at most `false_abstention` of the
    in-scope questions abstain (a wrong "not found" costs a user more than a weak answer). A question in
    `rankers` is ranked by the ranker fitted without it (`train_with_held_out`), as a new question will be. With
    `evidence` (what the answer made of the hits), P(correct) also reads ANSWER_FEATURES. `generated` questions
    (docstring ones the ranker did not train on) are more rows for P(correct) only: the dev questions alone are too
    few (it learns their noise), and a docstring sentence is not how a user asks in or out of scope."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from ml.answer.confidence import (
        ConfidenceModel,
        answer_features,
        features,
        fit_logistic,
        logit,
        question_words,
        text_row,
    )

    extra_in_scope = extra_in_scope or []
    rankers = rankers or {}
    shipped = retriever.model

    def search(question: str) -> list[Hit]:
        retriever.model = rankers.get(question, shipped)
        try:
            return retriever.search(question, k=k)
        finally:
            retriever.model = shipped

    answerable: list[tuple[str, int]] = []  # (question, top-3 cites a gold)
    answer_rows = []
    for q in dev:
        golds = golds_of(corpus, q)
        if golds:
            hits = search(q.question)
            answerable.append((q.question, 1 if first_rank([_result(h) for h in hits[:3]], golds) else 0))
            if evidence is not None:
                answer_rows.append(answer_features(q.question, hits, evidence(q.question, hits))[0])
    in_scope = [q for q, _ in answerable] + extra_in_scope
    questions = in_scope + out_of_scope
    scope = np.asarray([1] * len(in_scope) + [0] * len(out_of_scope))
    vectors = np.asarray(retriever.embedder.embed_documents(questions))
    text_words = sorted(set().union(*(question_words(q) for q in questions)))
    design = np.asarray([text_row(v, q, text_words) for v, q in zip(vectors, questions, strict=True)])
    text_model = fit_logistic(design, scope, c=3.0, standardize=False)
    folds = min(10, int(scope.sum()), int(len(scope) - scope.sum()))
    if folds >= 2:
        same = LogisticRegression(C=3.0, fit_intercept=False, max_iter=5000)
        held_out = cross_val_predict(same, design, scope, cv=folds, method="predict_proba")[:, 1]
    else:
        held_out = np.asarray([text_model.probability(row[None, :]) for row in design])
    rows = []
    for question, text_p in zip(questions, held_out, strict=True):
        foreign = vocabulary.foreign(question) if vocabulary is not None else (0.0, 0.0)
        rows.append(features(question, search(question), logit(float(text_p)), foreign)[0])
    x = np.asarray(rows)
    answered = x[: len(answerable)]
    if answer_rows:
        answered = np.c_[answered, np.asarray(answer_rows)]
    correct = [c for _, c in answerable]
    extra_rows, extra_correct = _generated_rows(generated or [], corpus, search, text_model, text_words, retriever,
                                                vocabulary, evidence if answer_rows else None)  # fmt: skip
    if extra_rows:
        answered = np.r_[answered, np.asarray(extra_rows)]
        correct += extra_correct
    correct_model = fit_logistic(answered, np.asarray(correct))
    scope_model = fit_logistic(x, scope)
    # The threshold reads held-out probabilities: on the questions it was fitted to, the scope model is surer of
    # each in-scope question than it will be of a new one, and a threshold set there abstains on too little.
    held_out_scope = _held_out_probabilities(x, scope, folds)
    probabilities = sorted(held_out_scope[: len(in_scope)])
    threshold = probabilities[int(false_abstention * len(probabilities))] if probabilities else 0.5
    return ConfidenceModel(
        correct_model,
        scope_model,
        float(threshold),
        text_model,
        text_words=text_words,
        trained_on={
            "answerable": len(answerable),
            "extra_in_scope": len(extra_in_scope),
            "out_of_scope": len(out_of_scope),
            "correct": int(sum(correct[: len(answerable)])),
            "generated": len(extra_rows),
            "ranked_held_out": sum(q in rankers for q, _ in answerable),
            "vocabulary_words": len(vocabulary.files) if vocabulary is not None else 0,
            # Cross-validated on these questions: the out-of-scope share the threshold abstains on.
            "held_out_out_of_scope_abstained": round(
                float(np.mean([p < threshold for p in held_out_scope[len(in_scope) :]])), 3
            ),
        },
    )


def _generated_rows(
    generated: list[Query],
    corpus: Corpus,
    search: Callable[[str], list[Hit]],
    text_model: Logistic,
    text_words: list[str],
    retriever: Retriever,
    vocabulary: Vocabulary | None,
    evidence: Callable[[str, list[Hit]], Evidence] | None,
) -> tuple[list[np.ndarray], list[int]]:
    """P(correct)'s rows and labels for generated questions with a resolvable gold, read as `train_confidence` reads
    a dev question (FEATURES, then ANSWER_FEATURES when `evidence` is given)."""
    from ml.answer.confidence import answer_features, features, logit, text_row

    asked = [(q, golds) for q in generated if (golds := golds_of(corpus, q))]
    if not asked:
        return [], []
    vectors = np.asarray(retriever.embedder.embed_documents([q.question for q, _ in asked]))
    rows, labels = [], []
    for (q, golds), vector in zip(asked, vectors, strict=True):
        hits = search(q.question)
        if not hits:
            continue
        foreign = vocabulary.foreign(q.question) if vocabulary is not None else (0.0, 0.0)
        text_scope = logit(text_model.probability(text_row(vector, q.question, text_words)[None, :]))
        row = features(q.question, hits, text_scope, foreign)[0]
        if evidence is not None:
            row = np.r_[row, answer_features(q.question, hits, evidence(q.question, hits))[0]]
        rows.append(row)
        labels.append(1 if first_rank([_result(h) for h in hits[:3]], golds) else 0)
    return rows, labels
