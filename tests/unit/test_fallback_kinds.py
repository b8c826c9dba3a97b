"""Every reason FallbackAnswerer writes has a kind, the label the service's fallback metric counts by."""

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
