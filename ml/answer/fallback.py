"""Choosing the answerer, and falling back to the extractive one when the LLM fails, with a circuit breaker.

The fallback answer says why it is one (`Answer.fallback`). Consecutive runner failures open the circuit: for
``reset_s`` the LLM is not called at all, so a dead runner costs nothing per request; then one trial call decides.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ml.answer.base import Answerer
from ml.answer.llm import LLMAnswerer, LLMError, LLMUnavailable, UnverifiedAnswer
from ml.errors import UserError
from ml.settings import Settings
from ml.types import Answer, Hit

logger = logging.getLogger(__name__)

# Why an answer fell back, as the first words of `Answer.fallback` (the rest is the detail). The kinds are what the
# service's fallback metric counts by (`fallback_kind`).
FALLBACK_PREFIXES = {
    "circuit_open": "circuit open",
    "unavailable": "llm unavailable",
    "unverified": "llm answer failed citation verification",
    "refused": "llm refused the request",
}


def fallback_kind(reason: str) -> str:
    """The kind of a fallback reason (a key of `FALLBACK_PREFIXES`), from the text `FallbackAnswerer` wrote."""
    for kind, prefix in FALLBACK_PREFIXES.items():
        if reason.startswith(prefix):
            return kind
    raise ValueError(f"Not a fallback reason FallbackAnswerer writes: {reason[:80]!r}")


class FallbackAnswerer:
    """`primary` (the LLM) when it works; otherwise `fallback`'s answer with ``fallback`` set to the reason."""

    def __init__(
        self,
        primary: Answerer,
        fallback: Answerer,
        *,
        failures: int = 3,
        reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = primary.name
        self.failures = failures
        self.reset_s = reset_s
        self.clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed`` (LLM in use), ``open`` (skipped) or ``half-open`` (next call is a trial)."""
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "open" if self.clock() < self._open_until else "half-open"

    def _admit(self) -> str | None:
        """None when the primary may be called, else why not."""
        with self._lock:
            if self._open_until is None:
                return None
            left = self._open_until - self.clock()
            if left > 0 or self._trial_running:
                return (
                    f"{FALLBACK_PREFIXES['circuit_open']} after {self._consecutive} LLM failures; "
                    f"retrying in {max(left, 0):.0f} s"
                )
            self._trial_running = True
            return None

    def _record(self, ok: bool) -> None:
        with self._lock:
            self._trial_running = False
            if ok:
                self._consecutive = 0
                self._open_until = None
                return
            self._consecutive += 1
            if self._consecutive >= self.failures:
                self._open_until = self.clock() + self.reset_s

    def answer(self, question: str, hits: list[Hit]) -> Answer:
        """The primary's answer, or the fallback's with the reason it was used."""
        blocked = self._admit()
        if blocked is not None:
            return self._fall_back(question, hits, blocked)
        t0 = time.perf_counter()
        try:
            result = self.primary.answer(question, hits)
        except LLMUnavailable as exc:
            self._record(ok=False)
            logger.warning("LLM answerer unavailable, answering extractively: %s", exc)
            return self._fall_back(question, hits, f"{FALLBACK_PREFIXES['unavailable']}: {exc}", t0)
        except UnverifiedAnswer as exc:
            self._record(ok=True)
            return self._fall_back(question, hits, f"{FALLBACK_PREFIXES['unverified']}: {exc}", t0, exc)
        except LLMError as exc:
            self._record(ok=True)
            return self._fall_back(question, hits, f"{FALLBACK_PREFIXES['refused']}: {exc}", t0)
        except BaseException:
            self._record(ok=True)  # not the runner's fault; release a trial slot and fail loudly
            raise
        self._record(ok=True)
        return result

    def _fall_back(
        self,
        question: str,
        hits: list[Hit],
        reason: str,
        started: float | None = None,
        unverified: UnverifiedAnswer | None = None,
    ) -> Answer:
        answer = self.fallback.answer(question, hits)
        timings = dict(answer.timings_ms)
        if started is not None:
            timings["llm_attempt_ms"] = (time.perf_counter() - started) * 1000
        update: dict[str, object] = {"fallback": reason, "timings_ms": timings}
        if unverified is not None:
            update["verification"] = unverified.verification
        return answer.model_copy(update=update)


def build_answerer(settings: Settings, extractive: Answerer) -> Answerer:
    """The answerer `settings` ask for: `extractive` as is, or the LLM with `extractive` as its fallback."""
    if settings.answerer == "extractive":
        return extractive
    if not settings.llm_url:
        raise UserError(
            "TQA_ANSWERER=llm needs TQA_LLM_URL, the base URL of an OpenAI-compatible endpoint "
            "(the Qwen runner: http://127.0.0.1:3001/v1)."
        )
    llm = LLMAnswerer(
        settings.llm_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_s=settings.llm_timeout_s,
        connect_timeout_s=settings.llm_connect_timeout_s,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        sources=settings.llm_sources,
    )
    return FallbackAnswerer(
        llm, extractive, failures=settings.llm_breaker_failures, reset_s=settings.llm_breaker_reset_s
    )
