"""Metrics of the answer checks: what citation verification did to LLM answers, and answers that fell back."""

from __future__ import annotations

import bentoml

from ml.answer.fallback import fallback_kind
from ml.types import Answer

ANSWER_CHECKS = bentoml.metrics.Counter(
    name="tqa_answer_checks",
    documentation="LLM answers by what citation verification did: verified, dropped_unsupported, fell_back, abstained.",
    labelnames=["outcome"],
)
DROPPED_SENTENCES = bentoml.metrics.Counter(
    name="tqa_answer_dropped_sentences",
    documentation="Sentences (with their citations) verification removed from LLM answers: unsupported or miscited.",
)
INVALID_CITATIONS = bentoml.metrics.Counter(
    name="tqa_answer_invalid_citations",
    documentation="Citations in LLM answers to a source number the model was not given.",
)
FALLBACKS = bentoml.metrics.Counter(
    name="tqa_answer_fallbacks",
    documentation="Answers given extractively because the LLM path failed, by reason: unavailable, circuit_open, "
    "unverified, refused.",
    labelnames=["reason"],
)


def count_answer_checks(answer: Answer) -> None:
    """Count what verification and the fallback did to one answer; an extractive-only answer counts nothing."""
    if answer.verification is not None:
        ANSWER_CHECKS.labels(outcome=answer.verification.outcome).inc()
        # Incremented by zero too: the series exist (at 0) from the first checked answer, so a ratio over them reads
        # 0, not "no data".
        DROPPED_SENTENCES.inc(len(answer.verification.dropped))
        INVALID_CITATIONS.inc(len(answer.verification.invalid_citations))
    if answer.fallback is not None:
        FALLBACKS.labels(reason=fallback_kind(answer.fallback)).inc()
