"""Feedback reaches MLflow as assessments on the query's trace, from the durable outbox, against a real server.

The traces are written by the service's own `QueryTracer` into a real `mlflow server` (SQLite backend); ratings and
reviews go through `FeedbackStore` and `Forwarder` exactly as in `tqa serve`; the server is stopped and restarted
to show an outage delays forwarding and loses nothing; `tqa feedback export` runs as a real process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ml.feedback.export import trace_pairs
from ml.feedback.forward import CORRECTION, EXPECTED, RATING, REVIEW, Forwarder, start_forwarder
from ml.feedback.store import FeedbackStore, new_query_id, validate_feedback
from ml.index.staging import feedback_buffer, staged_pairs
from ml.settings import Settings
from ml.tracking.server import MlflowServer
from ml.tracking.traces import QueryTracer
from tests.support.ports import free_port

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    s = MlflowServer(tmp_path_factory.mktemp("mlflow"), port=free_port()).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def settings(tmp_path: Path, server: MlflowServer) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", mlflow_tracking_uri=server.uri, tracing=True, trace_experiment=f"q-{tmp_path.name}"
    )


def answered(
    store: FeedbackStore, tracer: QueryTracer, question: str, abstained: bool = False, flush: bool = True
) -> str:
    """A traced and logged answer (what /ask does), citing one chunk; returns its query id. Unless `flush`, the trace
    stays in the tracer's batch (not in MLflow yet)."""
    qid = new_query_id()
    answer = {
        "answer": f"Answer to {question}",
        "abstained": abstained,
        "confidence": 0.8,
        "answerer": "extractive",
        "sources": [
            {"n": 1, "kind": "function", "path": "transformers/x.py", "start_line": 3, "end_line": 9, "symbol": "f"}
        ],
        "timings_ms": {"embed_ms": 1.0, "search_ms": 2.0, "answer_ms": 1.0, "total_ms": 4.0},
        "cited_chunks": {"1": "chunk-x-3"},
        "excerpts": {"1": "def f():\n    return 1\n"},
    }
    trace_id = tracer.record(qid, question, answer, time.time_ns())
    store.log_query(qid, question, answer, trace_id=trace_id)
    if flush:
        assert tracer.flush(timeout_s=60) == 0
    return qid


def ours(settings: Settings, store: FeedbackStore, qid: str) -> dict[str, list[object]]:
    from mlflow.tracing.client import TracingClient

    info = TracingClient(settings.mlflow_tracking_uri).get_trace_info(store.query(qid)["trace_id"])
    out: dict[str, list[object]] = {}
    for a in info.assessments or []:
        out.setdefault(a.name, []).append(a)
    return out


def test_ratings_and_reviews_become_assessments_once_each(settings: Settings) -> None:
    with FeedbackStore(settings.feedback_db) as store:
        tracer = QueryTracer(settings)
        qid = answered(store, tracer, "How does f return one?")
        store.record(validate_feedback(qid, "down", "wrong", "f returns the integer 1.", "192.0.2.7"))
        forwarder = Forwarder(store, settings.mlflow_tracking_uri)
        assert forwarder.drain() == {"sent": 1, "retry": 0, "no_trace": 0, "down": 0}
        got = ours(settings, store, qid)
        [rating], [correction] = got[RATING], got[CORRECTION]
        assert rating.value is False and rating.rationale == "wrong"
        assert rating.source.source_type == "HUMAN" and rating.source.source_id == "192.0.2.7"
        assert correction.value == "f returns the integer 1."

        # A crash after MLflow took the assessments but before the row was marked sent: forwarding again
        # finds them by their outbox id and only settles the row.
        row_id = store.outbox_rows(qid)[0]["id"]
        store._durable.execute("UPDATE outbox SET state = 'pending', sent_at = NULL WHERE id = ?", (row_id,))
        assert forwarder.drain()["sent"] == 1
        got = ours(settings, store, qid)
        assert len(got[RATING]) == 1 and len(got[CORRECTION]) == 1

        # Approval logs the reviewed answer as the expected answer; a second rating replaces everything before it.
        store.decide(qid, "approved", "f returns 1.", reviewer="maintainer")
        forwarder.drain()
        got = ours(settings, store, qid)
        assert got[REVIEW][0].value is True and got[EXPECTED][0].value == "f returns 1."
        assert got[EXPECTED][0].source.source_id == "maintainer"
        store.record(validate_feedback(qid, "up"))
        forwarder.drain()
        got = ours(settings, store, qid)
        assert set(got) == {RATING} and got[RATING][0].value is True
        assert store.outbox_counts() == {"pending": 0, "sent": 3, "no_trace": 0, "superseded": 0}


def test_an_untraced_answer_is_settled_without_a_trace(settings: Settings) -> None:
    with FeedbackStore(settings.feedback_db) as store:
        qid = new_query_id()
        store.log_query(qid, "Untraced question here?", {"answer": "a", "sources": []}, trace_id="")
        store.record(validate_feedback(qid, "up"))
        assert Forwarder(store, settings.mlflow_tracking_uri).drain()["no_trace"] == 1
        assert store.outbox_counts()["pending"] == 0


def test_an_mlflow_outage_delays_forwarding_and_loses_nothing(settings: Settings, server: MlflowServer) -> None:
    with FeedbackStore(settings.feedback_db) as store:
        tracer = QueryTracer(settings)
        ids = [answered(store, tracer, f"Question number {i} about f?") for i in range(3)]
        server.stop()
        try:
            for qid in ids:
                store.record(validate_feedback(qid, "up"))
            forwarder = Forwarder(store, settings.mlflow_tracking_uri)
            assert forwarder.forward_once()["down"] == 1 and store.outbox_counts()["pending"] == 3
            # A failure past the health check (the server dies mid-batch) keeps the row pending with a backoff.
            [row] = store.claim(1)
            assert store.retry_later(row["id"], "ConnectionError: refused") == 1.0
            assert store.outbox_counts()["pending"] == 3
        finally:
            server.start()
        store._durable.execute("UPDATE outbox SET next_at = 0")  # the backoff is over
        assert Forwarder(store, settings.mlflow_tracking_uri).drain()["sent"] == 3
        assert all(ours(settings, store, qid)[RATING][0].value is True for qid in ids)


def test_the_service_forwarder_keeps_forwarding_across_an_mlflow_restart(
    settings: Settings, server: MlflowServer
) -> None:
    """The forwarder thread `tqa serve` runs keeps one HTTP client for its health checks; after the server behind
    its pooled connection restarts, it must reconnect and forward what was rated during the outage."""

    def wait_for(done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not done():
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    with FeedbackStore(settings.feedback_db) as store:
        tracer = QueryTracer(settings)
        first, second = (answered(store, tracer, f"Which value does f return, take {i}?") for i in range(2))
        cycles: list[dict[str, int]] = []
        stop = start_forwarder(store, settings.mlflow_tracking_uri, on_cycle=cycles.append)
        try:
            store.record(validate_feedback(first, "up"))
            wait_for(lambda: store.outbox_counts()["sent"] == 1, "the first rating was not forwarded")
            server.stop()
            try:
                store.record(validate_feedback(second, "down", "wrong"))
                wait_for(lambda: any(c.get("down") for c in cycles), "the forwarder did not notice the outage")
                assert store.outbox_counts()["pending"] == 1
            finally:
                server.start()
            wait_for(lambda: store.outbox_counts()["sent"] == 2, "the rating made during the outage was not sent")
        finally:
            stop.set()
        assert ours(settings, store, second)[RATING][0].value is False


def export(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`tqa feedback export` as a real process over the test's data dir and trace experiment; it must exit 0."""
    env = {
        **os.environ,
        "TQA_DATA_DIR": str(settings.data_dir),
        "TQA_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "TQA_TRACE_EXPERIMENT": settings.trace_experiment,
    }
    command = [sys.executable, "-m", "ops.cli", "feedback", "export"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_export_stages_approved_corrections_and_well_rated_answers(settings: Settings) -> None:
    with FeedbackStore(settings.feedback_db) as store:
        tracer = QueryTracer(settings)
        corrected = answered(store, tracer, "What does f return exactly?")
        liked = answered(store, tracer, "Where is f defined in x?")
        abstained = answered(store, tracer, "How do I bake bread today?", abstained=True)
        disliked = answered(store, tracer, "Why does f exist at all?")
        store.record(validate_feedback(corrected, "down", correction="f returns 1."))
        store.decide(corrected, "approved", "`f` returns the integer 1.")
        store.record(validate_feedback(liked, "up"))
        store.record(validate_feedback(abstained, "up"))
        store.record(validate_feedback(disliked, "down", correction="Nobody knows."))
        store.decide(disliked, "rejected")
    export(settings)
    staged = staged_pairs(feedback_buffer(settings.staging_file))
    assert set(staged) == {corrected, liked}
    pair = staged[corrected]
    assert pair["category"] == "user_correction" and pair["answer"] == "`f` returns the integer 1."
    assert pair["source"]["kind"] == "feedback" and pair["id"] == f"feedback-{corrected}"
    assert pair["source"]["chunk_id"] == "chunk-x-3" and pair["context"].startswith("def f()")
    assert (
        staged[liked]["category"] == "rated_answer" and staged[liked]["answer"] == "Answer to Where is f defined in x?"
    )
    # Running it again writes nothing; the pairs read back from MLflow are the same.
    again = export(settings)
    assert json.loads(again.stdout[again.stdout.index("{") :])["written"] == 0
    assert {p.id for p in trace_pairs(settings.mlflow_tracking_uri, settings.trace_experiment)} >= {
        f"feedback-{corrected}",
        f"feedback-{liked}",
    }


def test_a_review_behind_a_rating_in_its_retry_delay_is_exported_at_once(settings: Settings) -> None:
    """What a maintainer meets: the thumbs-down was forwarded before the service had exported the answer's trace, so
    it waits out a retry delay; the correction is approved and `tqa feedback export` runs at once. The export tries
    the waiting rows now, and stages the pair."""
    with FeedbackStore(settings.feedback_db) as store:
        tracer = QueryTracer(settings, batch_s=600)  # the trace waits in the service's batch
        qid = answered(store, tracer, "What does f return exactly?", flush=False)
        store.record(validate_feedback(qid, "down", correction="f returns 1."))
        assert Forwarder(store, settings.mlflow_tracking_uri).forward_once()["retry"] == 1  # no trace in MLflow yet
        [rating] = store.outbox_rows(qid)
        for _ in range(7):  # seven more misses: the next try is minutes away
            store.retry_later(rating["id"], "RESOURCE_DOES_NOT_EXIST")
        assert tracer.close(timeout_s=60) == 0  # now the trace is there
        store.decide(qid, "approved", "`f` returns the integer 1.")
    done = export(settings)
    assert "could not reach MLflow" not in done.stdout
    staged = staged_pairs(feedback_buffer(settings.staging_file))
    assert staged[qid]["category"] == "user_correction" and staged[qid]["answer"] == "`f` returns the integer 1."
    with FeedbackStore(settings.feedback_db) as store:
        assert store.outbox_counts()["pending"] == 0


def _traced_ids(settings: Settings) -> set[str]:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.trace_experiment)
    traces = mlflow.search_traces(locations=[experiment.experiment_id], max_results=10_000, return_type="list")
    return {t.info.trace_id for t in traces}


ANSWER = {"answer": "f returns 1.", "abstained": False, "sources": [], "timings_ms": {"embed_ms": 1.0, "total_ms": 2.0}}


def test_queued_traces_are_sent_when_the_tracer_closes(settings: Settings) -> None:
    """Traces wait for their batch (here longer than the test); closing the tracer sends every one of them."""
    tracer = QueryTracer(settings, batch_s=600)
    ids = {tracer.record(new_query_id(), f"Question {i} about f?", ANSWER, time.time_ns()) for i in range(30)}
    assert tracer.pending() == 30 and tracer.exported == 0
    assert tracer.close(timeout_s=60) == 0
    assert _traced_ids(settings) == ids


def test_closing_with_mlflow_stopped_gives_up_within_its_bound(settings: Settings, server: MlflowServer) -> None:
    tracer = QueryTracer(settings, batch_s=600)
    for i in range(5):
        tracer.record(new_query_id(), f"Question {i} about f?", ANSWER, time.time_ns())
    server.stop()
    try:
        started = time.monotonic()
        assert tracer.close(timeout_s=3) == 5
        assert time.monotonic() - started < 10
    finally:
        server.start()


@pytest.mark.slow
def test_a_stopping_service_sends_its_queued_traces(indexed, settings: Settings, tmp_path: Path) -> None:
    """`tqa serve` stopped gracefully (SIGINT) right after answering: the traces still queued (batches every 600 s
    here) reach MLflow before its workers exit."""
    import httpx

    from tests.support.serve import start_service

    served = start_service(
        indexed.settings,
        tmp_path,
        TQA_TRACING="true",
        TQA_MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        TQA_TRACE_EXPERIMENT=settings.trace_experiment,
        TQA_TRACE_BATCH_S="600",
    )
    try:
        ids = [httpx.post(f"{served.url}/ask", json={"question": "How is RMS normalization implemented?"}, timeout=60)
               for _ in range(6)]  # fmt: skip
        assert all(r.status_code == 200 for r in ids)
        metrics = httpx.get(f"{served.url}/metrics").text
        queued = [float(v) for v in re.findall(r"^tqa_trace_queue\S* (\S+)$", metrics, re.M)]
        assert sum(queued) >= 1, "the answers wait in the export queue"
        assert _traced_ids(settings) == set()
    finally:
        served.stop()
    with FeedbackStore(indexed.settings.feedback_db) as store:
        traced = {store.query(r.json()["query_id"])["trace_id"] for r in ids}
    assert traced <= _traced_ids(settings) and len(traced) == 6
