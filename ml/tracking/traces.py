"""The query log on MLflow Tracing: each answered question becomes a trace with one span per pipeline stage.

The request thread only records plain data (the question, the answer dict and a trace id it draws itself) in a
bounded queue; an export thread turns batches of them into OpenTelemetry spans and sends each batch to the tracking
server's OTLP endpoint (`/v1/traces`) in one request. Spans are built from the timings the pipeline measured
(`timings_ms`), so tracing adds no work inside the answering path, and a slow or stopped tracking server delays
traces (the queue keeps the newest `max_queue`), never answers. `close()` flushes the queue within a bounded time
when the service stops.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import deque
from typing import Any

from ml.settings import Settings
from ml.tracking.server import disable_telemetry

log = logging.getLogger(__name__)

# Pipeline timings in the order the stages run, with the span type MLflow shows for each.
STAGES = (
    ("embed_ms", "embedding", "EMBEDDING"),
    ("search_ms", "search", "RETRIEVER"),
    ("rerank_ms", "rerank", "RERANKER"),
    ("answer_ms", "answer", "PARSER"),
    ("llm_attempt_ms", "llm", "LLM"),
    ("llm_ms", "llm", "LLM"),
    ("verify_ms", "verify", "PARSER"),
)
PREVIEW_CHARS = 1000
MAX_QUEUE = 10_000  # traces held while the tracking server is slow or down; the oldest go first beyond this
# Traces per OTLP request. The tracking server's cost per trace falls with the batch (one request, one transaction):
# about 4.5 ms of its CPU per trace in batches of 200 against 40-50 ms in batches of 10 (SQLite store, 2 cores).
MAX_BATCH = 500
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


SOURCE_FIELDS = ("path", "start_line", "end_line", "symbol", "commit", "url", "kind")


def cited_source(answer: dict[str, Any]) -> dict[str, Any]:
    """The first cited source with its chunk id and text (when the answer carries them): what a pair is grounded on.

    `tqa feedback export` builds dataset pairs from traces alone, so the trace keeps what a pair needs.
    """
    sources = answer.get("sources", [])
    if not sources:
        return {}
    first = sources[0]
    n = str(first.get("n", ""))
    out = {k: first.get(k) for k in SOURCE_FIELDS if first.get(k) is not None}
    chunk_id = answer.get("cited_chunks", {}).get(n)
    if chunk_id:
        out["chunk_id"] = chunk_id
        out["context"] = answer.get("excerpts", {}).get(n, "")
    return out


class QueryTracer:
    """Writes one MLflow trace per answered question into the `trace_experiment` of the tracking server.

    `record()` is what the request thread pays: a trace id, a tuple, a queue append. Everything else happens in the
    export thread, which sends a batch when `batch_s` has passed since the oldest queued trace or `MAX_BATCH` are
    waiting.
    """

    def __init__(
        self,
        settings: Settings,
        tags: dict[str, str] | None = None,
        batch_s: float | None = None,
        max_queue: int = MAX_QUEUE,
    ):
        disable_telemetry()
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        # Also checks the server answers: a service whose tracking server is down at start runs without a query log.
        self.experiment_id = mlflow.set_experiment(settings.trace_experiment).experiment_id
        self.tags = {k: v for k, v in (tags or {}).items() if v}
        self.endpoint = settings.mlflow_tracking_uri.rstrip("/") + "/v1/traces"
        self.batch_s = settings.trace_batch_s if batch_s is None else batch_s
        self.exported = self.dropped = self.failed_posts = 0
        self._queue: deque[tuple[int, str, str, dict[str, Any], int]] = deque()
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._stop = False
        self._flush = False
        self._sending = 0
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="tqa-trace-export", daemon=True)
        self._thread.start()

    def record(self, query_id: str, question: str, answer: dict[str, Any], started_ns: int) -> str:
        """Queue a trace of `answer` (not mutated afterwards) to `question`, begun at `started_ns` (time.time_ns());
        returns its trace id, which MLflow will know once the export thread has sent it."""
        otel_id = int.from_bytes(secrets.token_bytes(16), "big") or 1
        with self._cond:
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((otel_id, query_id, question, answer, started_ns))
            if len(self._queue) == 1 or len(self._queue) >= MAX_BATCH:
                self._cond.notify()
        return f"tr-{otel_id:032x}"

    def pending(self) -> int:
        """Traces queued or being sent."""
        with self._cond:
            return len(self._queue) + self._sending

    def flush(self, timeout_s: float = 10.0) -> int:
        """Send everything queued now, waiting at most `timeout_s`; returns how many traces are still not sent."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flush = True
            self._retry_at = 0.0
            self._cond.notify()
            while (self._queue or self._sending) and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._flush = False
            return len(self._queue) + self._sending

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush within `timeout_s` and stop the export thread; returns how many traces were never sent."""
        left = self.flush(timeout_s)
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=max(timeout_s, 1.0))
        if left:
            log.warning("%d queries were not traced: the tracking server at %s did not take them.", left, self.endpoint)
        return left

    # ---- export thread -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        import httpx

        auth = _basic_auth()
        headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": self.experiment_id}
        failures = 0
        with httpx.Client(timeout=30, auth=auth, headers=headers) as http:
            while True:
                with self._cond:
                    while not self._stop and not self._due():
                        self._cond.wait(self._wait_s())
                    if self._stop:
                        return
                    batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                    self._sending = len(batch)
                try:
                    response = http.post(self.endpoint, content=self._request(batch))
                    response.raise_for_status()
                except Exception as exc:  # the tracking server is down or refused: keep the batch, retry later
                    self.failed_posts += 1
                    delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                    failures += 1
                    log.info("Trace export to %s failed (%s); retrying in %.0f s.", self.endpoint, exc, delay)
                    with self._cond:
                        self._queue.extendleft(reversed(batch))
                        while len(self._queue) > self._max_queue:
                            self._queue.popleft()
                            self.dropped += 1
                        self._sending = 0
                        # A flush (shutdown) keeps trying within its own deadline.
                        self._retry_at = time.monotonic() + (min(delay, 0.5) if self._flush else delay)
                        self._cond.notify_all()
                    continue
                failures = 0
                with self._cond:
                    self.exported += len(batch)
                    self._sending = 0
                    self._cond.notify_all()

    def _due(self) -> bool:
        if not self._queue or time.monotonic() < self._retry_at:
            return False
        if self._flush or len(self._queue) >= MAX_BATCH:
            return True
        return time.time_ns() - self._queue[0][4] >= self.batch_s * 1e9

    def _wait_s(self) -> float | None:
        if not self._queue:
            return None
        due = self.batch_s - (time.time_ns() - self._queue[0][4]) / 1e9
        return max(due, self._retry_at - time.monotonic(), 0.01)

    def _request(self, batch: list[tuple[int, str, str, dict[str, Any], int]]) -> bytes:
        """One OTLP ExportTraceServiceRequest (protobuf) holding every span of every trace in `batch`."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        scope.scope.name = "tqa"
        for otel_id, query_id, question, answer, started_ns in batch:
            for span in self._spans(otel_id, query_id, question, answer, started_ns):
                scope.spans.append(span)
        return bytes(request.SerializeToString())

    def _spans(self, otel_id: int, query_id: str, question: str, answer: dict[str, Any], started_ns: int) -> list[Any]:
        from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

        trace_id = otel_id.to_bytes(16, "big")
        root_id = secrets.token_bytes(8)
        timings = answer.get("timings_ms", {})
        children, at = [], started_ns
        for key, name, kind in STAGES:
            if key not in timings:
                continue
            ns = int(timings[key] * 1e6)
            span = Span(trace_id=trace_id, span_id=secrets.token_bytes(8), parent_span_id=root_id, name=name)
            span.start_time_unix_nano, span.end_time_unix_nano = at, at + ns
            span.status.code = Status.STATUS_CODE_OK
            _attributes(span, {"mlflow.spanType": kind})
            children.append(span)
            at += ns
        root = Span(trace_id=trace_id, span_id=root_id, name="ask")
        root.start_time_unix_nano = started_ns
        root.end_time_unix_nano = started_ns + max(int(timings.get("total_ms", 0.0) * 1e6), at - started_ns)
        root.status.code = Status.STATUS_CODE_OK
        tags = {**self.tags, "tqa.query_id": query_id, "tqa.answerer": str(answer.get("answerer", ""))}
        outputs = {
            "answer": str(answer.get("answer", ""))[:PREVIEW_CHARS],
            "abstained": bool(answer.get("abstained")),
            "confidence": answer.get("confidence"),
            "sources": [s.get("url") or s.get("path") for s in answer.get("sources", [])],
            "cited": cited_source(answer),
        }
        _attributes(
            root,
            {
                "mlflow.spanType": "CHAIN",
                "mlflow.spanInputs": {"question": question[:PREVIEW_CHARS]},
                "mlflow.spanOutputs": outputs,
                **{f"mlflow.traceTag.{k}": v for k, v in tags.items()},
            },
        )
        return [root, *children]


def _attributes(span: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        attribute = span.attributes.add()
        attribute.key = key
        _any_value(attribute.value, value)


def _any_value(out: Any, value: Any) -> None:
    """An OTLP AnyValue; MLflow decodes it back to the same JSON value (dicts as key-value lists)."""
    if value is None:
        return
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, dict):
        out.kvlist_value.SetInParent()
        for k, v in value.items():
            kv = out.kvlist_value.values.add()
            kv.key = str(k)
            _any_value(kv.value, v)
    elif isinstance(value, list | tuple):
        out.array_value.SetInParent()
        for v in value:
            _any_value(out.array_value.values.add(), v)
    else:
        out.string_value = str(value)


def _basic_auth() -> tuple[str, str] | None:
    """The tracking server's login, from the variables the MLflow client itself reads."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None


def make_tracer(settings: Settings, tags: dict[str, str] | None = None) -> QueryTracer | None:
    """A tracer when TQA_TRACING is on and the tracking server answers; None (and a warning saying why) otherwise."""
    if not settings.tracing:
        return None
    try:
        return QueryTracer(settings, tags)
    except Exception as exc:  # the service must start and answer without its query log; the log says why
        log.warning("Query tracing is off: MLflow at %s did not answer (%s).", settings.mlflow_tracking_uri, exc)
        return None
