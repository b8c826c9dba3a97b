"""Learned re-ranking: what a (question, candidate) pair looks like as numbers, and the model that fuses them.

The hybrid search finds candidates; which one answers is decided by signals no single score carries: the model
family a question names and the folder a chunk lives in, the generated `modeling_*.py` against its `modular_*.py`
source, a symbol whose name the question describes, an argument entry for a "which default" question, how much of
the candidate list comes from the same file. A linear model over these features, fitted listwise (each question's
candidates against each other), is trained on questions with known gold symbols (`tqa train ranker`,
`bench/retrieval_quality.py`) and shipped as a small JSON of weights, so a ranking costs one dot product per
candidate.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ml.errors import UserError
from ml.index.tokens import split_identifier
from ml.types import Hit

WORD = re.compile(r"[A-Za-z0-9_]+")
HOW = re.compile(r"^\s*(how (do|can|should|would) (i|you|we)|how to|what('s| is) the (best|right) way)\b", re.I)
DEFAULT = re.compile(r"\b(default|defaults|argument|parameter|option|flag|set to|controls?)\b", re.I)
WHERE = re.compile(r"\b(where|which (file|module|class|function))\b", re.I)
ERROR = re.compile(r"\b(error|exception|raises?|warning|fails?|traceback)\b", re.I)
# Family folder names that are also everyday words: they count only when written as a name (`OPT`, `GIT`).
COMMON_WORD_FAMILIES = frozenset(
    {
        "auto",
        "bit",
        "git",
        "rag",
        "opt",
        "led",
        "align",
        "mega",
        "nat",
        "sam",
        "dia",
        "deprecated",
        "encoder_decoder",
        "pop2piano",
        "lilt",
        "mra",
        "yoso",
        "cpm",
        "dit",
        "esm",
        "glm",
        "mpt",
        "phi",
        "vit",
        "dac",
        "xlm",
    }
)
STOP = frozenset(
    """a an the and or of to in on for with by from at as is are was were be been being it its this that these those
    how do does did can could should would will i you we my your our me what which who why when where there here not
    no if so than then just also only into about use using used get set make want need way""".split()
)

FEATURES = [
    "bias",
    "hybrid",
    "hybrid_rank",
    "dense",
    "bm25",
    "bm25_rank",
    "in_bm25",
    "name_overlap",
    "name_exact",
    "text_overlap",
    "family_match",
    "family_other",
    "family_asked",
    "modular",
    "configuration",
    "modeling",
    "file_support",
    "file_share",
    "kind_class",
    "kind_method",
    "kind_function",
    "kind_module",
    "kind_argument",
    "kind_example",
    "kind_doc",
    "continuation",
    "getter",
    "private",
    "how_x_example",
    "default_x_argument",
    "where_x_class",
    "error_x_raise",
    "quoted_rank",
]


def words(text: str) -> list[str]:
    """Lower-cased words and identifier parts, without stopwords."""
    out: list[str] = []
    for token in WORD.findall(text):
        parts = split_identifier(token) or [token.lower()]
        out.extend(p for p in parts if p not in STOP and len(p) > 1)
    return out


def _stem(word: str) -> str:
    return word[:5]


def family_prefixes(root: Path | None, path_prefix: str) -> dict[str, str]:
    """Model family -> the path prefix of its folder, from the `models/` directory of the indexed tree."""
    if root is None or not (root / "models").is_dir():
        return {}
    return {d.name: f"{path_prefix}models/{d.name}/" for d in sorted((root / "models").iterdir()) if d.is_dir()}


def asked_families(question: str, families: dict[str, str]) -> list[str]:
    """Families the question names: `BLOOM's ALiBi` -> bloom, `GPT-2` -> gpt2, `gpt neox` -> gpt_neox."""
    if not families:
        return []
    tokens = re.findall(r"[A-Za-z0-9]+", question)
    candidates: list[tuple[str, str]] = [(t.lower(), t) for t in tokens]
    for a, b in zip(tokens, tokens[1:], strict=False):
        candidates += [((a + b).lower(), a + b), (f"{a}_{b}".lower(), f"{a} {b}")]
    found: list[str] = []
    for name, written in candidates:
        if name not in families or name in found:
            continue
        if name in COMMON_WORD_FAMILIES and not any(c.isupper() for c in written[1:]) and not written.isupper():
            continue
        found.append(name)
    # Longest names first: `gpt_neox` over `gpt`, `qwen2_moe` over `qwen2`.
    return sorted(found, key=len, reverse=True)[:2]


@dataclass
class Candidate:
    """A hit with the scores of each search that found it."""

    hit: Hit
    hybrid: float = 0.0
    hybrid_rank: int = 0
    bm25: float = 0.0
    bm25_rank: int = 0
    quoted_rank: int = 0
    features: dict[str, float] = field(default_factory=dict)


def featurize(question: str, candidates: list[Candidate], families: dict[str, str], asked: list[str]) -> np.ndarray:
    """One row of FEATURES per candidate."""
    q_words = words(question)
    q_stems = {_stem(w) for w in q_words}
    q_set = set(q_words)
    identifiers = {t.lower() for t in WORD.findall(question) if "_" in t or re.search(r"[a-z][A-Z]", t)}
    how, default, where, error = (bool(p.search(question)) for p in (HOW, DEFAULT, WHERE, ERROR))
    by_file = Counter(c.hit.chunk.path for c in candidates)
    file_score: dict[str, float] = {}
    for c in candidates:
        file_score[c.hit.chunk.path] = file_score.get(c.hit.chunk.path, 0.0) + max(c.hybrid, 0.0)
    top_file = max(file_score.values(), default=1.0) or 1.0
    asked_prefixes = [families[f] for f in asked]
    rows = []
    for c in candidates:
        chunk = c.hit.chunk
        name = chunk.symbol.rsplit(".", 1)[-1]
        name_words = [w for w in split_identifier(name) if w not in STOP] or [name.lower()]
        name_stems = {_stem(w) for w in name_words}
        basename = chunk.path.rsplit("/", 1)[-1]
        in_models = "/models/" in f"/{chunk.path}"
        text_words = set(words(chunk.text[:2000]))
        f = {
            "bias": 1.0,
            "hybrid": c.hybrid,
            "hybrid_rank": 1.0 / (1 + c.hybrid_rank) if c.hybrid_rank else 0.0,
            "dense": c.hit.dense,
            "bm25": c.bm25,
            "bm25_rank": 1.0 / (1 + c.bm25_rank) if c.bm25_rank else 0.0,
            "in_bm25": 1.0 if c.bm25_rank else 0.0,
            "name_overlap": len(name_stems & q_stems) / len(name_stems) if name_stems else 0.0,
            "name_exact": 1.0 if {p.lower() for p in chunk.symbol.split(".")} & identifiers else 0.0,
            "text_overlap": len(q_set & text_words) / len(q_set) if q_set else 0.0,
            "family_match": 1.0 if any(chunk.path.startswith(p) for p in asked_prefixes) else 0.0,
            "family_other": 1.0
            if asked_prefixes and in_models and not any(chunk.path.startswith(p) for p in asked_prefixes)
            else 0.0,
            "family_asked": 1.0 if asked_prefixes else 0.0,
            "modular": 1.0 if basename.startswith("modular_") else 0.0,
            "configuration": 1.0 if basename.startswith("configuration_") else 0.0,
            "modeling": 1.0 if basename.startswith("modeling_") else 0.0,
            "file_support": math.log1p(by_file[chunk.path] - 1),
            "file_share": file_score[chunk.path] / top_file,
            "kind_class": float(chunk.kind == "class"),
            "kind_method": float(chunk.kind == "method"),
            "kind_function": float(chunk.kind == "function"),
            "kind_module": float(chunk.kind == "module"),
            "kind_argument": float(chunk.kind == "argument"),
            "kind_example": float(chunk.kind == "example"),
            "kind_doc": float(chunk.kind in ("doc", "text")),
            "continuation": 1.0
            if chunk.kind in ("function", "method") and "... (continued, part" in chunk.text
            else 0.0,
            "getter": 1.0 if _is_getter(chunk.text) else 0.0,
            "private": 1.0 if name.startswith("_") and not name.startswith("__") else 0.0,
            "how_x_example": float(how and chunk.kind == "example"),
            "default_x_argument": float(default and chunk.kind == "argument"),
            "where_x_class": float(where and chunk.kind in ("class", "module")),
            "error_x_raise": float(error and "raise " in chunk.text),
            "quoted_rank": 1.0 / (1 + c.quoted_rank) if c.quoted_rank else 0.0,
        }
        c.features = f
        rows.append([f[name] for name in FEATURES])
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(FEATURES))


def _is_getter(text: str) -> bool:
    body = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(("@", "#"))]
    return len(body) <= 3 and any(line.startswith("return self._") for line in body)


@dataclass
class RankModel:
    """Linear weights over FEATURES (after standardisation); `probability` is P(candidate answers)."""

    weights: list[float]
    mean: list[float]
    scale: list[float]
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    trained_on: dict[str, object] = field(default_factory=dict)

    def scores(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.weights)

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.scores(x)))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> RankModel:
        data = json.loads(path.read_text())
        model = cls(**data)
        if model.features != FEATURES:
            raise UserError(f"{path} was trained on other features; retrain it with `tqa train ranker`.")
        return model


def default_model() -> RankModel | None:
    """The ranker shipped with the package, or None when none has been trained yet."""
    resource = resources.files("ml").joinpath("data/ranker.json")
    if not resource.is_file():
        return None
    return RankModel.load(Path(str(resource)))


def fit(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: np.ndarray | None = None, l2: float = 10.0
) -> RankModel:
    """Train the model listwise: for each question (rows sharing a `groups` value), a softmax over its candidates
    puts the most probability on its gold ones (the log of their summed probability, times the question's
    `weights`, L2 penalty `l2` on standardised features). Then one logistic over the scores this gives makes
    `probability` P(candidate is a gold symbol).

    Which candidate comes first is decided within one question's list, so that is what the model learns: fitted per
    candidate with balanced classes instead, it spent its weights telling questions' score levels apart (tuning
    half, 10-fold CV: symbol MRR@10 0.552 -> 0.634, Recall@5 0.754 -> 0.810).

    Gradient-boosted trees over the same features (LightGBM's lambdarank, 200 rounds of 7-31 leaves, or 30-200
    rounds of 3-8 leaves boosting from this model's scores) ranked no better on the tuning half (5-fold CV, symbol
    Recall@5 0.73-0.82 against 0.81, MRR@10 0.57-0.63 against 0.62): the features' interactions that matter are
    already written as features (`how_x_example`, `default_x_argument`), and the rest is noise at this data size."""
    from scipy.optimize import minimize
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    mean[0], scale[0] = 0.0, 1.0  # the bias column stays a constant 1
    z = (x - mean) / scale
    row_weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    lists = []
    for group in dict.fromkeys(groups.tolist()):
        rows = np.flatnonzero(groups == group)
        if y[rows].any():  # a question with no gold among its candidates says nothing about their order
            lists.append((z[rows], y[rows].astype(bool), float(row_weights[rows[0]])))
    if not lists:
        raise ValueError("No question has a gold candidate to learn from.")

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.5 * l2 * float(w @ w), l2 * w
        for rows, gold, weight in lists:
            s = rows @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            on_gold = p[gold].sum()
            total -= weight * math.log(on_gold + 1e-12)
            # d(-log sum_gold p)/dw = E_p[z] - E_{p restricted to gold}[z]
            grad += weight * (rows.T @ (p - np.where(gold, p, 0.0) / (on_gold + 1e-12)))
        return total, grad

    w = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x
    platt = LogisticRegression(C=1e4, max_iter=1000).fit((z @ w)[:, None], y)
    a, b = float(platt.coef_[0][0]), float(platt.intercept_[0])
    weights_out = a * w
    weights_out[0] += b  # the bias column is a constant 1 after standardisation
    return RankModel(
        weights=[float(v) for v in weights_out],
        mean=[float(m) for m in mean],
        scale=[float(s) for s in scale],
        trained_on={"pairs": int(len(y)), "positives": int(y.sum()), "queries": int(len(set(groups.tolist())))},
    )
