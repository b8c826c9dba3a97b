"""The BentoML RAG service: POST /ask and /search over the index, with health, readiness and metrics."""

from __future__ import annotations

import logging
import os
import random
from http import HTTPStatus
from typing import Any

import bentoml
from pydantic import Field

from ml.feedback.store import FeedbackError, FeedbackStore, new_query_id, validate_feedback
from ml.pipeline import MAX_K, QA, InvalidQuestion
from ml.settings import Settings
from ml.tracking.traces import make_tracer
from ml.types import FILE_KINDS, HISTORY_KINDS, SearchResult
from serving.answer_metrics import count_answer_checks
from serving.doors import Doors
from serving.release_info import ReleaseHeaders
from serving.release_probe import is_probe
from serving.runner_health import RunnerHealth, start_runner_probe
from serving.storage import stored
from serving.web_page import make_app

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


class RequestTooLarge(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BadRequest(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.BAD_REQUEST


class NotFound(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.NOT_FOUND


class InjectedFault(bentoml.exceptions.BentoMLException):
    """The 500 a release drill's version answers with (TQA_FAULT_ERROR_SHARE)."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR


ASK_LATENCY = bentoml.metrics.Histogram(
    name="tqa_ask_seconds",
    documentation="Time to answer a question, seconds.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ABSTENTIONS = bentoml.metrics.Counter(name="tqa_abstentions", documentation="Questions answered with an abstention.")
FEEDBACK = bentoml.metrics.Counter(
    name="tqa_feedback", documentation="Ratings recorded durably, by rating.", labelnames=["rating"]
)
OUTBOX_PENDING = bentoml.metrics.Gauge(
    name="tqa_feedback_outbox_pending", documentation="Ratings and reviews not yet attached to their MLflow trace."
)
FORWARDED = bentoml.metrics.Counter(
    name="tqa_feedback_forwarded",
    documentation="Outbox rows forwarded to MLflow, by outcome (sent, retry, no_trace).",
    labelnames=["outcome"],
)
MLFLOW_DOWN = bentoml.metrics.Gauge(
    name="tqa_feedback_mlflow_down", documentation="1 while the tracking server does not answer the forwarder."
)
TRACE_ERRORS = bentoml.metrics.Counter(
    name="tqa_trace_errors", documentation="Answers whose trace failed or was dropped before reaching MLflow."
)
TRACE_QUEUE = bentoml.metrics.Gauge(name="tqa_trace_queue", documentation="Traces waiting to be sent to MLflow.")
# How long a stopping worker may spend sending its queued traces.
TRACE_FLUSH_S = 10.0
EXCERPT_CHARS = 1500


def _check(exc: InvalidQuestion | FeedbackError) -> bentoml.exceptions.BentoMLException:
    if exc.status == 404:
        return NotFound(str(exc))
    return RequestTooLarge(str(exc)) if exc.status == 413 else BadRequest(str(exc))


def _cited(sources: list[dict[str, Any]], hits: list[Any]) -> dict[str, Any]:
    """Cited chunks by citation number: the page shows their text under [n]; the query log keeps their ids."""
    # A source quoted from its whole symbol cites the symbol (`Hit.body`). Where a body spans the same lines as an
    # indexed chunk (a class: its outline chunk, read with its methods' code), the indexed chunk is what is logged,
    # so a reviewed correction traces back to a chunk the index holds.
    by_span = {(b.path, b.start_line, b.end_line): b for b in (h.body for h in hits) if b is not None}
    by_span |= {(h.chunk.path, h.chunk.start_line, h.chunk.end_line): h.chunk for h in hits}
    out = {}
    for s in sources:
        chunk = by_span.get((s["path"], s["start_line"], s["end_line"]))
        if chunk is not None:
            out[str(s["n"])] = chunk
    return out


def _trace_tags(settings: Settings) -> dict[str, str]:
    return {
        "tqa.environment": settings.environment,
        "tqa.model_version": getattr(settings, "model_version", None) or "",
        "tqa.model_alias": getattr(settings, "model_alias", None) or "",
        "tqa.llm_model": settings.llm_model if settings.answerer == "llm" else "",
    }


@bentoml.asgi_app(make_app(), path="/", name="web")
@bentoml.service(name="tqa-rag", traffic={"timeout": 30, "concurrency": 32}, workers=2)
class RAGService:
    """Answers questions about the Transformers repository with numbered, pinned citations."""

    def __init__(self) -> None:
        import torch

        # Concurrent questions are embedded in one batch; a second intra-op thread per forward pass only
        # competes with Weaviate and the other requests for the same cores.
        torch.set_num_threads(1)
        self.settings = Settings()
        self.qa = QA(self.settings, batch_queries=True)
        self.qa.warm_up()
        self.feedback_store = FeedbackStore(self.settings.feedback_db)
        self.tracer = make_tracer(self.settings, tags=_trace_tags(self.settings))
        self._dropped = 0
        if self.tracer is not None:
            from ml.feedback.forward import start_forwarder

            # Ratings and reviews reach MLflow as assessments on their query's trace, from the durable outbox.
            self.forwarder_stop = start_forwarder(
                self.feedback_store, self.settings.mlflow_tracking_uri, on_cycle=self._outbox_metrics
            )
        # The runner's state goes to a gauge and /healthz, not to /readyz: without it answers are extractive.
        start_runner_probe(self.settings, breaker=self.qa.answerer, interval_s=self.settings.llm_probe_s)

    @bentoml.on_shutdown
    def _flush_traces(self) -> None:
        """Queued traces reach MLflow before the worker exits, within TRACE_FLUSH_S (a stopped MLflow loses them)."""
        if self.tracer is not None:
            lost = self.tracer.close(TRACE_FLUSH_S)
            TRACE_ERRORS.inc(lost)

    def _outbox_metrics(self, counts: dict[str, int]) -> None:
        for outcome in ("sent", "retry", "no_trace"):
            if counts.get(outcome):
                FORWARDED.labels(outcome=outcome).inc(counts[outcome])
        OUTBOX_PENDING.set(self.feedback_store.outbox_counts()["pending"])
        MLFLOW_DOWN.set(counts.get("down", 0))

    def __is_ready__(self) -> bool:
        return self.qa.index.client.is_ready()

    # `k` is range-checked by the pipeline, not by pydantic here: BentoML turns a pydantic error into a 400 whose
    # message is a validation dump, and the API promises one sentence ("k must be between 1 and 50.").
    @bentoml.api(route="/ask")
    def ask(
        self,
        ctx: bentoml.Context,
        question: str = Field(default=""),
        k: int = Field(default=5, description=f"Sources, 1 to {MAX_K}."),
        excerpts: bool = Field(default=False, description="Also return the cited text by citation number."),
    ) -> dict[str, Any]:
        """Answer a question; the JSON carries query_id, answer, confidence, abstained, sources and timings_ms."""
        import time

        started, started_ns = time.perf_counter(), time.time_ns()
        hits: list[Any] = []
        try:
            answer = self.qa.ask(question, k=k, hits_out=hits)
        except InvalidQuestion as exc:
            raise _check(exc) from exc
        if self.settings.fault_delay_s:
            time.sleep(self.settings.fault_delay_s)
        if self.settings.fault_error_share and random.random() < self.settings.fault_error_share:
            raise InjectedFault("This version fails a share of its answers on purpose (TQA_FAULT_ERROR_SHARE).")
        # The release's persona probe is not a user: its answers stay out of the latency and abstention metrics the
        # canary analysis reads (it counts them apart, see serving/release_info.py).
        if not is_probe(ctx.request.headers):
            ASK_LATENCY.observe(time.perf_counter() - started)
            if answer.abstained:
                ABSTENTIONS.inc()
            count_answer_checks(answer)
        query_id = new_query_id()
        out = answer.model_dump()
        cited = _cited(out["sources"], hits)
        texts = {n: c.text[:EXCERPT_CHARS] for n, c in cited.items()}
        # The log and the trace keep the cited chunks, so a reviewed correction becomes a dataset pair traceable to
        # the index.
        logged = {**out, "excerpts": texts, "cited_chunks": {n: c.id for n, c in cited.items()}}
        trace_id = ""
        if self.tracer is not None:
            try:
                # Plain data into the export queue: MLflow spans are built and sent in batches by the export thread.
                trace_id = self.tracer.record(query_id, question.strip(), logged, started_ns)
            except Exception:  # a broken query log must not cost the answer; the log says what broke
                TRACE_ERRORS.inc()
                logging.getLogger(__name__).exception("Tracing /ask failed")
            TRACE_QUEUE.set(self.tracer.pending())
            if self.tracer.dropped > self._dropped:  # the queue was full (MLflow down for long): oldest traces went
                TRACE_ERRORS.inc(self.tracer.dropped - self._dropped)
                self._dropped = self.tracer.dropped
        with stored(self.settings.data_dir):
            self.feedback_store.log_query(query_id, question.strip(), logged, trace_id=trace_id)
        out["query_id"] = query_id
        if excerpts:
            out["excerpts"] = texts
        return out

    @bentoml.api(route="/feedback")
    def feedback(
        self,
        ctx: bentoml.Context,
        query_id: str = Field(default=""),
        rating: str = Field(default="", description="up or down."),
        comment: str | None = None,
        correction: str | None = Field(default=None, description="The right answer, for review."),
    ) -> dict[str, Any]:
        """Rate an answer by its query_id; 201 once the rating is on disk, 404 for an unknown query_id."""
        client = ctx.request.client.host if ctx.request.client else ""
        try:
            with stored(self.settings.data_dir):
                recorded = self.feedback_store.record(validate_feedback(query_id, rating, comment, correction, client))
        except FeedbackError as exc:
            raise _check(exc) from exc
        FEEDBACK.labels(rating=recorded["rating"]).inc()
        ctx.response.status_code = HTTPStatus.CREATED
        return recorded

    @bentoml.api(route="/search")
    def search(
        self,
        query: str = Field(default=""),
        k: int = Field(default=10, description=f"Results, 1 to {MAX_K}."),
        kind: list[str] | None = None,
        path_prefix: str | None = None,
    ) -> dict[str, Any]:
        """Ranked chunks for a query, best first, with optional kind and path-prefix filters."""
        unknown = sorted(set(kind or []) - set(FILE_KINDS) - set(HISTORY_KINDS))
        if unknown:
            valid = ", ".join((*FILE_KINDS, *HISTORY_KINDS))
            raise BadRequest(f"Unknown kind {', '.join(map(repr, unknown))}; valid kinds are {valid}.")
        try:
            hits = self.qa.search(query, k=k, kinds=kind, path_prefix=path_prefix)
        except InvalidQuestion as exc:
            raise _check(exc) from exc
        return {"results": [SearchResult.of(h).model_dump() for h in hits]}


# With an LLM answerer, /healthz also says whether its runner is up (see serving/runner_health.py); added first so
# it wraps ReleaseHeaders' /healthz.
RAGService.add_asgi_middleware(RunnerHealth)

# A release-pinned service names its version on every response (see serving/release_info.py).
RAGService.add_asgi_middleware(ReleaseHeaders)


# API keys on write and admin routes, per-client rate limits on /ask and /search, request size limits: see doors.py.
RAGService.add_asgi_middleware(Doors)
