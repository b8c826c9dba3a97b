"""The query log on MLflow Tracing: each answered question becomes a trace with one span per pipeline stage.

Spans are built after the answer from the timings the pipeline measured (`timings_ms`), so tracing adds no work
inside the answering path; MLflow exports the finished trace on a background thread with a bounded queue
(`MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE`), so a slow or stopped tracking server delays or drops traces, never
answers.
"""

from __future__ import annotations

import logging
import os
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
    """Writes one MLflow trace per answered question into the `trace_experiment` of the tracking server."""

    def __init__(self, settings: Settings, tags: dict[str, str] | None = None):
        disable_telemetry()
        # Two export threads (MLflow's default is 10): on a small serving host they compete with answering.
        os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", "2")
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        self.experiment_id = mlflow.set_experiment(settings.trace_experiment).experiment_id
        self.tags = {k: v for k, v in (tags or {}).items() if v}

    def record(self, query_id: str, question: str, answer: dict[str, Any], started_ns: int) -> str:
        """Trace `answer` to `question`, which began at `started_ns` (time.time_ns()); returns the trace id."""
        from mlflow.entities import SpanType

        timings = answer.get("timings_ms", {})
        total_ns = int(timings.get("total_ms", 0.0) * 1e6)
        root = self._mlflow.start_span_no_context(
            "ask",
            span_type=SpanType.CHAIN,
            inputs={"question": question[:PREVIEW_CHARS]},
            tags={**self.tags, "tqa.query_id": query_id, "tqa.answerer": str(answer.get("answerer", ""))},
            experiment_id=self.experiment_id,
            start_time_ns=started_ns,
        )
        at = started_ns
        for key, name, kind in STAGES:
            if key not in timings:
                continue
            ns = int(timings[key] * 1e6)
            span = self._mlflow.start_span_no_context(
                name, span_type=getattr(SpanType, kind), parent_span=root, start_time_ns=at
            )
            span.end(end_time_ns=at + ns)
            at += ns
        root.set_outputs(
            {
                "answer": str(answer.get("answer", ""))[:PREVIEW_CHARS],
                "abstained": bool(answer.get("abstained")),
                "confidence": answer.get("confidence"),
                "sources": [s.get("url") or s.get("path") for s in answer.get("sources", [])],
                "cited": cited_source(answer),
            }
        )
        root.end(end_time_ns=started_ns + max(total_ns, at - started_ns))
        return str(root.trace_id)


def make_tracer(settings: Settings, tags: dict[str, str] | None = None) -> QueryTracer | None:
    """A tracer when TQA_TRACING is on and the tracking server answers; None (and a warning saying why) otherwise."""
    if not settings.tracing:
        return None
    try:
        return QueryTracer(settings, tags)
    except Exception as exc:  # the service must start and answer without its query log; the log says why
        log.warning("Query tracing is off: MLflow at %s did not answer (%s).", settings.mlflow_tracking_uri, exc)
        return None
