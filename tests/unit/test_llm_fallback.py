"""FallbackAnswerer: extractive answers flagged with the reason, a circuit breaker that stops calling a dead LLM."""

from __future__ import annotations

import pytest

from ml.answer.fallback import FallbackAnswerer, build_answerer
from ml.answer.llm import LLMAnswerer, LLMRejected, LLMUnavailable, UnverifiedAnswer
from ml.errors import UserError
from ml.settings import Settings
from ml.types import Answer, Hit, Verification


class Scripted:
    """A primary answerer that raises or answers as told, counting its calls."""

    name = "llm"

    def __init__(self) -> None:
        self.calls = 0
        self.fail_with: Exception | None = None

    def answer(self, question: str, hits: list[Hit]) -> Answer:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return Answer(answer="from the llm [1]", confidence=0.9, abstained=False, sources=[], answerer="llm")


class Extractive:
    name = "extractive"

    def answer(self, question: str, hits: list[Hit]) -> Answer:
        return Answer(answer="extracted", confidence=0.5, abstained=False, sources=[], timings_ms={"extract_ms": 1.0})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_working_llm_answers_without_fallback() -> None:
    answer = FallbackAnswerer(Scripted(), Extractive()).answer("q", [])
    assert answer.answerer == "llm" and answer.fallback is None


def test_unavailable_llm_falls_back_and_says_why() -> None:
    llm = Scripted()
    llm.fail_with = LLMUnavailable("ConnectError calling http://127.0.0.1:9/v1/chat/completions")
    answer = FallbackAnswerer(llm, Extractive()).answer("q", [])
    assert answer.answerer == "extractive" and answer.answer == "extracted"
    assert answer.fallback is not None and answer.fallback.startswith("llm unavailable: ConnectError")
    assert "llm_attempt_ms" in answer.timings_ms and answer.timings_ms["extract_ms"] == 1.0


def test_unverified_answer_falls_back_with_the_verification() -> None:
    llm = Scripted()
    llm.fail_with = UnverifiedAnswer("no supported sentence", Verification(outcome="fell_back", kept=0, dropped=["x"]))
    answer = FallbackAnswerer(llm, Extractive()).answer("q", [])
    assert answer.fallback is not None and "citation verification" in answer.fallback
    assert answer.verification is not None and answer.verification.dropped == ["x"]


def test_circuit_opens_after_consecutive_failures_then_retries_after_reset() -> None:
    llm, clock = Scripted(), Clock()
    answerer = FallbackAnswerer(llm, Extractive(), failures=2, reset_s=30, clock=clock)
    llm.fail_with = LLMUnavailable("down")
    answerer.answer("q", [])
    answerer.answer("q", [])
    assert answerer.state == "open" and llm.calls == 2
    skipped = answerer.answer("q", [])
    assert llm.calls == 2, "an open circuit must not call the LLM"
    assert skipped.fallback is not None and skipped.fallback.startswith("circuit open")
    clock.now += 31
    assert answerer.state == "half-open"
    llm.fail_with = None
    recovered = answerer.answer("q", [])
    assert recovered.answerer == "llm" and llm.calls == 3 and answerer.state == "closed"


def test_failed_trial_reopens_the_circuit() -> None:
    llm, clock = Scripted(), Clock()
    answerer = FallbackAnswerer(llm, Extractive(), failures=1, reset_s=10, clock=clock)
    llm.fail_with = LLMUnavailable("down")
    answerer.answer("q", [])
    clock.now += 11
    answerer.answer("q", [])
    assert answerer.state == "open" and llm.calls == 2


def test_rejections_and_unverified_answers_do_not_open_the_circuit() -> None:
    llm = Scripted()
    answerer = FallbackAnswerer(llm, Extractive(), failures=1)
    llm.fail_with = LLMRejected("prompt too long")
    assert answerer.answer("q", []).fallback is not None
    llm.fail_with = UnverifiedAnswer("none", Verification(outcome="fell_back", kept=0))
    answerer.answer("q", [])
    assert answerer.state == "closed" and llm.calls == 2


def test_programming_errors_are_not_hidden() -> None:
    llm = Scripted()
    llm.fail_with = TypeError("bug")
    with pytest.raises(TypeError):
        FallbackAnswerer(llm, Extractive()).answer("q", [])


def test_build_answerer_chooses_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    extractive = Extractive()
    assert build_answerer(Settings(), extractive) is extractive
    monkeypatch.setenv("TQA_ANSWERER", "llm")
    with pytest.raises(UserError, match="TQA_LLM_URL"):
        build_answerer(Settings(), extractive)
    monkeypatch.setenv("TQA_LLM_URL", "http://127.0.0.1:3001/v1")
    monkeypatch.setenv("TQA_LLM_BREAKER_FAILURES", "5")
    chosen = build_answerer(Settings(), extractive)
    assert isinstance(chosen, FallbackAnswerer) and chosen.failures == 5
    assert isinstance(chosen.primary, LLMAnswerer) and chosen.primary.url == "http://127.0.0.1:3001/v1/chat/completions"
    chosen.primary.close()
