"""Forward the feedback outbox to MLflow: each rating and review becomes assessments on the query's trace.

A rating becomes a `user_rating` feedback (True for thumbs up; the comment as its rationale; a human source naming
the client) and, with a correction, a `user_correction` expectation. A review becomes a `correction_review` feedback
(True when approved) and, when approved, an `expected_answer` expectation: what `tqa feedback export` turns into a
dataset pair. This is `mlflow.log_feedback` / `mlflow.log_expectation` through the tracing client of one tracking
URI, so the MLflow UI shows each answer with its feedback.

Forwarding is idempotent: every assessment carries its outbox row id in `metadata["tqa.outbox"]`, and a row whose
assessments are already on the trace (a crash between logging them and marking the row sent) is only marked sent.
A second rating of the same answer replaces the first: the assessments of older rows are deleted once the new ones
are logged. MLflow down, or a trace not exported yet, keeps the row pending with a growing delay; only an answer
with no trace at all (tracing was off, or its trace never reached MLflow within `no_trace_after_s`) is settled as
`no_trace`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ml.feedback.store import FeedbackStore
from ml.tracking.server import disable_telemetry

log = logging.getLogger(__name__)

RATING = "user_rating"
CORRECTION = "user_correction"
REVIEW = "correction_review"
EXPECTED = "expected_answer"
OURS = (RATING, CORRECTION, REVIEW, EXPECTED)
KEY = "tqa.outbox"
NO_TRACE_AFTER_S = 3600.0
HEALTH_TIMEOUT_S = 3.0


def _not_found(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _row(assessment: Any) -> int:
    """The outbox row an assessment of ours was logged for (0 for one logged by hand)."""
    key = str((assessment.metadata or {}).get(KEY, "0"))
    return int(key) if key.isdigit() else 0


class Forwarder:
    """Moves due outbox rows of one feedback store into MLflow assessments on one tracking server."""

    def __init__(self, store: FeedbackStore, tracking_uri: str, no_trace_after_s: float = NO_TRACE_AFTER_S):
        disable_telemetry()
        from mlflow.tracing.client import TracingClient

        self.store = store
        self.tracking_uri = tracking_uri
        self.client = TracingClient(tracking_uri)
        self.no_trace_after_s = no_trace_after_s
        self._http: Any = None  # the httpx client `run` keeps for its health checks

    def reachable(self) -> bool:
        """Whether the tracking server answers its health check (always True for a non-HTTP tracking URI).

        Checked before claiming rows, so an outage costs one short request, not MLflow's minutes of retries per row.
        """
        if not self.tracking_uri.startswith(("http://", "https://")):
            return True
        import httpx

        # A new client per check (httpx.get) builds an SSL context: 27 ms of CPU against 1.4 ms on a kept client, paid
        # by the serving process every cycle of every worker's forwarder.
        get = self._http.get if self._http is not None else httpx.get
        try:
            return get(f"{self.tracking_uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            return False

    def forward_once(self, limit: int = 50) -> dict[str, int]:
        """Forward the due rows (at most `limit`): counts of rows sent, kept for later, settled without a trace,
        and `down` 1 when the tracking server did not answer (nothing was claimed; everything waits)."""
        counts = {"sent": 0, "retry": 0, "no_trace": 0, "down": 0}
        if not self.reachable():
            counts["down"] = 1
            return counts
        for row in self.store.claim(limit):
            if not row["trace_id"]:
                self.store.settle(row["id"], "no_trace", "the answer was not traced (TQA_TRACING was off)")
                counts["no_trace"] += 1
                continue
            try:
                self._forward(row)
            except Exception as exc:  # the row stays pending; the outage or missing trace is retried with backoff
                if _not_found(exc) and time.time() - (row["asked_at"] or 0) > self.no_trace_after_s:
                    self.store.settle(row["id"], "no_trace", f"trace {row['trace_id']} never reached MLflow")
                    counts["no_trace"] += 1
                    continue
                delay = self.store.retry_later(row["id"], f"{type(exc).__name__}: {exc}")
                log.info("Feedback %s for %s waits %.0f s: %s", row["id"], row["query_id"], delay, exc)
                counts["retry"] += 1
                continue
            self.store.settle(row["id"], "sent")
            counts["sent"] += 1
        return counts

    def drain(self, timeout_s: float = 60.0, patience_s: float = 0.0) -> dict[str, int]:
        """Forward until nothing is due, nor being sent by another forwarder (a service worker), or `timeout_s` passes.

        A row waiting out a backoff (its trace had not reached MLflow yet) is waited for when it falls due within
        `patience_s`, and left for later otherwise.
        """
        total = {"sent": 0, "retry": 0, "no_trace": 0, "down": 0}
        deadline = time.monotonic() + timeout_s
        patient_until = time.time() + min(patience_s, timeout_s)
        while time.monotonic() < deadline:
            counts = self.forward_once()
            for k, v in counts.items():
                total[k] += v
            if counts["down"]:
                break
            if not any(counts.values()):
                if self.store.in_flight():
                    time.sleep(0.5)
                    continue
                due = self.store.next_due()
                if due is None or due > patient_until:
                    break
                time.sleep(min(max(due - time.time(), 0.05), max(deadline - time.monotonic(), 0.0)))
        return total

    def _forward(self, row: dict[str, Any]) -> None:
        from mlflow.entities import AssessmentSource, AssessmentSourceType, Expectation, Feedback

        trace_id, payload, me = row["trace_id"], row["payload"], str(row["id"])
        info = self.client.get_trace_info(trace_id)
        existing = [a for a in (info.assessments or []) if a.name in OURS]
        have = {a.name for a in existing if (a.metadata or {}).get(KEY) == me}
        meta = {KEY: me, "tqa.query_id": row["query_id"]}
        wanted: list[Any] = []
        if row["kind"] == "rating":
            who = AssessmentSource(AssessmentSourceType.HUMAN, payload.get("client") or "anonymous")
            wanted.append(
                Feedback(
                    RATING, payload["rating"] == "up", source=who, rationale=payload["comment"] or None, metadata=meta
                )
            )
            if payload["correction"]:
                wanted.append(Expectation(CORRECTION, payload["correction"], source=who, metadata=meta))
            # A new rating replaces every earlier assessment of ours: the old rating, correction and its review.
            stale = [a for a in existing if _row(a) < row["id"]]
        else:
            who = AssessmentSource(AssessmentSourceType.HUMAN, payload.get("reviewer") or "reviewer")
            approved = payload["decision"] == "approved"
            wanted.append(Feedback(REVIEW, approved, source=who, metadata=meta))
            if approved:
                wanted.append(Expectation(EXPECTED, payload["answer"], source=who, metadata=meta))
            stale = [a for a in existing if a.name in (REVIEW, EXPECTED) and _row(a) < row["id"]]
        for assessment in wanted:
            if assessment.name not in have:
                self.client.log_assessment(trace_id, assessment)
        for old in stale:
            self.client.delete_assessment(trace_id, old.assessment_id)

    def run(
        self,
        stop: threading.Event,
        idle_s: float = 2.0,
        on_cycle: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        """Forward until `stop` is set; polls every `idle_s` seconds when nothing was due. `on_cycle` gets each
        cycle's counts (the service turns them into metrics)."""
        import httpx

        with httpx.Client() as http:
            self._http = http
            try:
                self._run(stop, idle_s, on_cycle)
            finally:
                self._http = None

    def _run(self, stop: threading.Event, idle_s: float, on_cycle: Callable[[dict[str, int]], None] | None) -> None:
        while not stop.is_set():
            try:
                counts = self.forward_once()
                if on_cycle is not None:
                    on_cycle(counts)
            except Exception:  # the store itself failed (disk full?): say so, keep the thread alive, try again
                log.exception("Forwarding feedback to MLflow failed")
                counts = {}
            if counts.get("down") or not any(counts.values()):
                stop.wait(idle_s)


def start_forwarder(
    store: FeedbackStore, tracking_uri: str, on_cycle: Callable[[dict[str, int]], None] | None = None
) -> threading.Event:
    """Run a `Forwarder` on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    forwarder = Forwarder(store, tracking_uri)
    thread = threading.Thread(
        target=forwarder.run, args=(stop, 2.0, on_cycle), name="tqa-feedback-forward", daemon=True
    )
    thread.start()
    return stop
