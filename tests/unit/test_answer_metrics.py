"""Answer-check metrics: every reason FallbackAnswerer writes has a kind, and verification drops are counted."""

from __future__ import annotations

import pytest

from ml.answer.fallback import FALLBACK_PREFIXES, FallbackAnswerer, fallback_kind
from ml.answer.llm import LLMRejected, LLMUnavailable, UnverifiedAnswer
from ml.types import Answer, Hit, Verification


class Failing:
    name = "llm"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def answer(self, question: str, hits: list[Hit]) -> Answer:
        raise self.error


class Extractive:
    name = "extractive"

    def answer(self, question: str, hits: list[Hit]) -> Answer:
        return Answer(answer="extracted", confidence=0.5, abstained=False, sources=[])


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (LLMUnavailable("ConnectError calling http://127.0.0.1:9/v1/chat/completions"), "unavailable"),
        (UnverifiedAnswer("no sentence is supported", Verification(outcome="fell_back", kept=0)), "unverified"),
        (LLMRejected("max_tokens is over the limit"), "refused"),
    ],
)
def test_each_failure_falls_back_with_its_kind(error: Exception, kind: str) -> None:
    answer = FallbackAnswerer(Failing(error), Extractive()).answer("q", [])
    assert answer.fallback is not None and fallback_kind(answer.fallback) == kind


def test_an_open_circuit_has_its_kind() -> None:
    answerer = FallbackAnswerer(Failing(LLMUnavailable("down")), Extractive(), failures=1)
    first, second = answerer.answer("q", []), answerer.answer("q", [])
    assert fallback_kind(first.fallback or "") == "unavailable"
    assert fallback_kind(second.fallback or "") == "circuit_open"
    assert set(FALLBACK_PREFIXES) == {"unavailable", "unverified", "refused", "circuit_open"}


def test_a_reason_it_never_writes_is_an_error() -> None:
    with pytest.raises(ValueError, match="Not a fallback reason"):
        fallback_kind("the model was tired")


def _counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import prometheus_client

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in prometheus_client.REGISTRY.collect()
        if family.name.startswith("tqa_answer_")
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_verification_drops_and_fallbacks_are_counted() -> None:
    """One supported sentence, one unsupported, one citing a source it was not given; then an answer with none left."""
    import httpx

    from ml.answer.llm import LLMAnswerer
    from ml.types import Chunk
    from serving.answer_metrics import count_answer_checks

    fact = "Gradient checkpointing is incompatible with use_cache=True, so use_cache is set to False in training."
    hits = [Hit(chunk=Chunk(id="c1", kind="function", text=fact, path="m.py", start_line=1, end_line=9), score=1.0)]

    def replying(content: str) -> FallbackAnswerer:
        def handler(_: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}]})

        llm = LLMAnswerer(
            "http://runner.test/v1", model="q", client=httpx.Client(transport=httpx.MockTransport(handler))
        )
        return FallbackAnswerer(llm, Extractive())

    before = _counted()
    partly = replying(
        "Gradient checkpointing is incompatible with use_cache=True, so use_cache is set to False [1]. "
        "The cache doubles the speed of every TPU [1]. Bananas are yellow [4]."
    ).answer("q", hits)
    unsupported = replying("The moon is made of cheese [1].").answer("q", hits)
    count_answer_checks(partly)
    count_answer_checks(unsupported)
    after = _counted()

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert partly.fallback is None and partly.verification is not None
    assert partly.verification.outcome == "dropped_unsupported" and len(partly.verification.dropped) == 2
    assert moved("tqa_answer_checks_total", outcome="dropped_unsupported") == 1
    assert moved("tqa_answer_checks_total", outcome="fell_back") == 1
    assert moved("tqa_answer_dropped_sentences_total") == 3
    assert moved("tqa_answer_invalid_citations_total") == 1
    assert moved("tqa_answer_fallbacks_total", reason="unverified") == 1
