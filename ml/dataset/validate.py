"""Validation before a pair enters the dataset: grounded, not degenerate, not a duplicate; then the leak-free split."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

from ml.dataset.types import QAPair
from ml.types import HISTORY_KINDS

_BACKTICK = re.compile(r"`([^`]+)`")
_TOKEN = re.compile(r"[A-Za-z0-9_]+")


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the form duplicates are compared in."""
    return " ".join(_TOKEN.findall(text.lower()))


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def grounding(answer: str, context: str) -> float:
    """Share of the answer's tokens found in the context; 1.0 when the answer is a span of it."""
    quoted = _BACKTICK.findall(answer)
    if quoted:
        # A templated answer ("`x` defaults to `None`."): what must come from the context is what it quotes.
        answer = " ".join(quoted)
    norm_answer, norm_context = normalise(answer), normalise(context)
    if norm_answer and norm_answer in norm_context:
        return 1.0
    answer_tokens = tokens(answer)
    if not answer_tokens:
        return 0.0
    vocab = set(tokens(context))
    return sum(t in vocab for t in answer_tokens) / len(answer_tokens)


def problem(pair: QAPair, min_grounding: float = 0.9) -> str | None:
    """Why a pair must not enter the dataset, or None when it is fine."""
    question, answer, context = pair.question.strip(), pair.answer.strip(), pair.context.strip()
    if not question or not answer or not context:
        return "empty"
    if len(question) < 10 or len(tokens(question)) < 3:
        return "degenerate_question"
    if normalise(answer) == normalise(question) or normalise(answer) == normalise(pair.source.symbol):
        return "degenerate_answer"
    if len(answer) > 2000:
        return "answer_too_long"
    compact_context = " ".join(context.split())
    for ident in _BACKTICK.findall(answer):
        if " ".join(ident.split()) not in compact_context:
            return "identifier_not_in_context"
    for ident in _BACKTICK.findall(question):
        if ident not in compact_context and ident not in (pair.source.path, pair.source.symbol):
            module = pair.source.path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            if ident != module:
                return "identifier_not_in_context"
    if grounding(answer, context) < min_grounding:
        return "not_grounded"
    return None


def source_identity(pair: QAPair) -> tuple[str, str, str, str, str]:
    s = pair.source
    return (s.path, s.symbol, s.commit, str(s.issue or ""), str(s.pr or ""))


def leakage_group(pair: QAPair) -> str:
    """The unit that must sit in one split: the file for code and docs, the commit or thread for history."""
    s = pair.source
    if s.kind in ("commit", "diff"):
        return f"commit:{s.commit}"
    if s.kind in ("issue", "pr"):
        return f"{s.kind}:{s.pr or s.issue}"
    return f"file:{s.path}"


def validate(pairs: Iterable[QAPair], min_grounding: float = 0.9) -> tuple[list[QAPair], Counter[str]]:
    """Pairs that pass every check, de-duplicated (normalised question + source), and rejections by reason.

    A question asked of two different sources with different answers is ambiguous and is dropped everywhere.
    """
    rejected: Counter[str] = Counter()
    kept: dict[tuple[str, tuple[str, ...]], QAPair] = {}
    by_question: dict[str, set[str]] = {}
    for pair in pairs:
        reason = problem(pair, min_grounding)
        if reason:
            rejected[reason] += 1
            continue
        key = (normalise(pair.question), source_identity(pair))
        if key in kept:
            rejected["duplicate"] += 1
            continue
        kept[key] = pair
        by_question.setdefault(key[0], set()).add(normalise(pair.answer))
    out = []
    for (question, _), pair in kept.items():
        if len(by_question[question]) > 1:
            rejected["ambiguous_question"] += 1
            continue
        out.append(pair)
    return out, rejected


def assign_splits(pairs: list[QAPair], eval_fraction: float = 0.2) -> list[QAPair]:
    """Eval gets whole files (by a hash of the path) and the newest history (by time), so nothing leaks.

    Code and docs: a file's pairs all land in one split. Commits, issues and PRs: those at or after the time that
    leaves `eval_fraction` of them older go to eval, so every eval item is newer than every train item.
    """
    dates = sorted({p.source.date for p in pairs if p.source.kind in HISTORY_KINDS and p.source.date})
    cutoff = dates[int(len(dates) * (1 - eval_fraction))] if dates else None
    out = []
    for pair in pairs:
        if pair.source.kind in HISTORY_KINDS:
            is_eval = bool(cutoff and pair.source.date and pair.source.date >= cutoff)
        else:
            bucket = int(hashlib.sha256(leakage_group(pair).encode()).hexdigest()[:8], 16) % 10_000
            is_eval = bucket < eval_fraction * 10_000
        out.append(pair.model_copy(update={"split": "eval" if is_eval else "train"}))
    return out


def overlaps_held_out(extra: Iterable[QAPair], evaluation: list[QAPair]) -> tuple[list[QAPair], list[QAPair]]:
    """Split pairs meant for training (feedback) into those that may train and those that touch held-out data.

    A pair overlaps when its question (normalised) is an eval question, or it is grounded in an eval source: the
    same chunk, or the same file, commit or thread (its leakage group). Training on it would leak the eval split.
    """
    questions = {normalise(p.question) for p in evaluation}
    chunks = {p.source.chunk_id for p in evaluation}
    groups = {leakage_group(p) for p in evaluation}
    kept, dropped = [], []
    for pair in extra:
        touches = (
            normalise(pair.question) in questions
            or pair.source.chunk_id in chunks
            or (bool(pair.source.path) and leakage_group(pair) in groups)
        )
        (dropped if touches else kept).append(pair)
    return kept, dropped
