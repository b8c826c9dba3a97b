"""The people's side under load: /ask throughput with MLflow query tracing off and on, and feedback durability.

Builds the mini corpus index in a temporary data dir, starts a real MLflow server and `tqa serve` (in rounds of
TQA_TRACING=false then true), and drives 8 concurrent clients with `bench.serve_load.load`. Deployed, the tracking
server has a host of its own (infra: `mlflow-0`); on one machine it runs at nice 19 while the clients are measured, in
both arms alike, so it takes the CPU serving leaves as a host of its own would take none, and at its normal priority
after each window, when the bench waits until every answer of the arm is a trace in MLflow (checked by trace id
against the query store). Each round prints its on/off ratio with the load average. Then, tracing on, it posts
ratings at a paced 200/s, stops MLflow for a minute in the middle of the run, and `kill -9`s the server while posts
are still in flight. Every acknowledged (201) post must be in the store: each has its own outbox row, so the check is
per post, not per answer. A restarted server then forwards the outbox; MLflow must end up holding, for every rated
answer, the assessment of its last acknowledged rating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import machine, percentile
from bench.serve_load import load
from ml.eval.retrieval import dev_queries, out_of_scope_questions
from ml.feedback.store import FeedbackStore
from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.local_server import processes_with_env
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.tracking.server import MlflowServer
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port
from tests.support.serve import Served, start_service

# The doors' per-client rate limit would turn a one-host load test into 429s; the bench measures the service.
NO_RATE_LIMIT = {"TQA_RATE_LIMIT_PER_MINUTE": "100000000", "TQA_RATE_LIMIT_BURST": "100000"}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the live processes `pids`."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of the live processes in process group `pgid` (the MLflow server and its workers)."""
    return cpu_seconds(group_pids(pgid))


def set_group_nice(pgid: int, nice: int) -> bool:
    """Set the nice value of every thread of process group `pgid`; False when not allowed (raising it needs root)."""
    try:
        os.setpriority(os.PRIO_PGRP, pgid, nice)
    except PermissionError:
        return False
    return True


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return pids


def pin_group(pgid: int, cpus: set[int]) -> None:
    """Run every thread of process group `pgid` on `cpus` only (its future threads and children inherit it)."""
    for pid in group_pids(pgid):
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except (ProcessLookupError, PermissionError):
                continue


def trace_ids_logged(settings: Settings) -> set[str]:
    """Trace ids of every answer in the query store (empty for answers given with tracing off)."""
    with FeedbackStore(settings.feedback_db) as store:
        return {r[0] for r in store._durable.execute("SELECT trace_id FROM queries WHERE trace_id != ''")}


def trace_ids_in_mlflow(uri: str, experiment: str) -> set[str]:
    """Ids of the traces in `experiment` of the tracking server at `uri` (their spans left out)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return set()
    out: set[str] = set()
    token = None
    while True:
        page = client.search_traces(
            locations=[found.experiment_id], max_results=500, page_token=token, include_spans=False
        )
        out |= {t.info.trace_id for t in page}
        token = page.token
        if not token:
            return out


def serve_cpu_seconds(served: Served) -> float:
    """CPU seconds of `tqa serve`: BentoML runs its workers in sessions of their own, found by the port they carry."""
    return cpu_seconds(processes_with_env("TQA_PORT", served.url.rsplit(":", 1)[1]))


async def paced_feedback(
    url: str, query_ids: list[str], rate: float, clients: int, stop: threading.Event
) -> tuple[list[tuple[int, str]], int, int]:
    """Post ratings at `rate`/s until `stop` is set; returns the acknowledged (post number, query id), posts sent,
    and posts that failed (non-201 or a broken connection, as the kill makes them)."""
    acked: list[tuple[int, str]] = []
    sent = failed = 0
    started = time.monotonic()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent, failed
        while not stop.is_set():
            i = sent
            sent += 1
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            qid = query_ids[i % len(query_ids)]
            body = {"query_id": qid, "rating": "down" if i % 3 else "up", "comment": f"post {i}"}
            if i % 5 == 0:
                body["correction"] = f"answer {i}"
            try:
                response = await http.post(f"{url}/feedback", json=body)
            except httpx.HTTPError:
                failed += 1
                continue
            if response.status_code == 201:
                acked.append((i, qid))
            else:
                failed += 1

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return acked, sent, failed


def durability(
    settings: Settings, base: Path, mlflow: MlflowServer, questions: list[str], args: argparse.Namespace
) -> None:
    """Paced ratings, MLflow stopped for `args.outage` s in the middle, kill -9 under load; then count losses."""
    env = {"TQA_TRACING": "true", "TQA_MLFLOW_TRACKING_URI": mlflow.uri, **NO_RATE_LIMIT}
    served: Served = start_service(settings, base, **env)
    ids = [httpx.post(f"{served.url}/ask", json={"question": q}).json()["query_id"] for q in questions[:50]]
    time.sleep(3)  # the traces of these answers are exported in the background
    stop, outage = threading.Event(), {}

    def outage_window() -> None:
        time.sleep(args.outage_at)
        mlflow.stop()
        outage["stopped"] = time.monotonic()
        time.sleep(args.outage)
        mlflow.start()
        outage["back"] = time.monotonic()

    def kill() -> None:
        time.sleep(args.feedback_seconds)
        served.kill9()  # under load: posts are in flight
        stop.set()

    timers = [threading.Thread(target=outage_window), threading.Thread(target=kill)]
    began = time.monotonic()
    for timer in timers:
        timer.start()
    acked, sent, failed = asyncio.run(paced_feedback(served.url, ids, args.rate, args.feedback_clients, stop))
    elapsed = time.monotonic() - began
    for timer in timers:
        timer.join()
    print(
        f"  feedback: {sent} posts in {elapsed:.0f} s ({len(acked) / elapsed:.0f} acknowledged/s, target "
        f"{args.rate:.0f}/s, {args.feedback_clients} clients); MLflow down {outage['back'] - outage['stopped']:.0f} s "
        f"from t={args.outage_at:.0f} s (restart included); "
        f"kill -9 under load ({failed} posts failed or cut off, never acknowledged)"
    )
    with FeedbackStore(settings.feedback_db) as store:
        rows = store._durable.execute("SELECT id, query_id, payload FROM outbox WHERE kind = 'rating'").fetchall()
        # Each post's outbox row id is its commit order (concurrent posts commit in any order).
        committed = {(r["query_id"], json.loads(r["payload"])["comment"]): r["id"] for r in rows}
        lost = [i for i, qid in acked if (qid, f"post {i}") not in committed]
        newest_acked: dict[str, int] = {}
        for i, qid in acked:
            newest_acked[qid] = max(newest_acked.get(qid, 0), committed.get((qid, f"post {i}"), 0))
        # The stored rating must be the last committed one, at least as new as every acknowledged one.
        wrong = [
            qid
            for qid, row_id in newest_acked.items()
            if committed.get((qid, (store.feedback(qid) or {}).get("comment", "")), -1) < row_id
        ]
        counts = store.outbox_counts()
    print(
        f"  after kill -9: {len(lost)} of {len(acked)} acknowledged posts lost; {len(wrong)} of {len(newest_acked)} "
        f"answers hold a rating older than one acknowledged for them; outbox {counts}"
    )
    restarted = start_service(settings, base, **env)
    try:
        began = time.monotonic()
        with FeedbackStore(settings.feedback_db) as store:
            while store.outbox_counts()["pending"] and time.monotonic() - began < args.drain_timeout:
                time.sleep(1)
            counts = store.outbox_counts()
            latest = {
                r["query_id"]: r["id"]
                for r in store._durable.execute(
                    "SELECT query_id, MAX(id) AS id FROM outbox WHERE kind = 'rating' GROUP BY query_id"
                )
            }
            traces = {qid: store.query(qid)["trace_id"] for qid in latest}
        print(f"  restarted server forwarded the outbox in {time.monotonic() - began:.0f} s: {counts}")
        from mlflow.tracing.client import TracingClient

        client = TracingClient(mlflow.uri)
        behind = 0
        for qid, row_id in latest.items():
            ratings = [a for a in client.get_trace_info(traces[qid]).assessments or [] if a.name == "user_rating"]
            if [a.metadata.get("tqa.outbox") for a in ratings] != [str(row_id)]:
                behind += 1
        print(f"  MLflow: {len(latest) - behind} of {len(latest)} rated answers carry exactly their last rating")
    finally:
        restarted.stop()


def tracing_throughput(
    settings: Settings, base: Path, mlflow: MlflowServer, questions: list[str], args: argparse.Namespace
) -> None:
    """Rounds of `tqa serve` with tracing off then on, each arm measured the same way; prints each round's ratio."""
    assert mlflow.process is not None
    pgid = mlflow.process.pid
    ratios, traced, raised = [], 0, True
    for round_ in range(1, args.rounds + 1):
        rate: dict[str, float] = {}
        loads: list[float] = []
        for tracing in ("false", "true"):
            served = start_service(
                settings,
                base,
                TQA_TRACING=tracing,
                TQA_MLFLOW_TRACKING_URI=mlflow.uri,
                TQA_ENVIRONMENT="local",
                **NO_RATE_LIMIT,
            )
            try:
                asyncio.run(load(served.url, questions, args.clients, 3, 10**9))  # warm-up
                set_group_nice(pgid, args.mlflow_nice)
                cpu = group_cpu_seconds(pgid), serve_cpu_seconds(served)
                load_before = os.getloadavg()[0]
                r = asyncio.run(load(served.url, questions, args.clients, args.seconds, 10**9))
                load_after = os.getloadavg()[0]
                serve_cpu = serve_cpu_seconds(served) - cpu[1]
                raised = set_group_nice(pgid, 0) and raised
                note = ""
                if tracing == "true":
                    # Every answer must become a trace: wait for the backlog the window left, then compare by id.
                    began = time.monotonic()
                    while True:
                        expected = trace_ids_logged(settings)
                        missing = len(expected - trace_ids_in_mlflow(mlflow.uri, settings.trace_experiment))
                        if not missing or time.monotonic() - began > args.drain_timeout:
                            break
                        time.sleep(2)
                    waited, traced = time.monotonic() - began, len(expected)
                    note = (
                        f"; {missing} answers NOT traced after {waited:.0f} s"
                        if missing
                        else f"; all {traced} answers so far are traces in MLflow {waited:.0f} s after the window"
                    )
                mlflow_cpu = group_cpu_seconds(pgid) - cpu[0]
                rate[tracing] = r["answers_per_s"]
                loads += [load_before, load_after]
                answers = max(1, r["answers"])
                print(
                    f"  round {round_}, tracing {tracing:5}: {r['answers_per_s']:.1f} answers/s, p50 {r['p50_ms']:.0f} "
                    f"ms, p95 {r['p95_ms']:.0f} ms, {r['errors']} errors ({r['answers']} answers in {args.seconds:.0f} "
                    f"s); CPU ms per answer: tqa serve {serve_cpu / answers * 1000:.1f}, MLflow server "
                    f"{mlflow_cpu / answers * 1000:.1f} (window and backlog); load {load_before:.1f}->{load_after:.1f}"
                    f"{note}"
                )
            finally:
                served.stop()
        ratios.append(rate["true"] / rate["false"])
        print(
            f"  round {round_}: throughput with tracing on / off = {ratios[-1]:.3f} ({rate['true']:.1f} vs "
            f"{rate['false']:.1f} answers/s; 1-min load average {min(loads):.1f}..{max(loads):.1f} on "
            f"{os.cpu_count()} CPUs; bar >= 0.95: {'met' if ratios[-1] >= 0.95 else 'NOT met'})"
        )
    print(
        f"  tracking server at nice {args.mlflow_nice} during each window (a host of its own, emulated), at 0 after"
        + ("" if raised else " (not allowed here: it stayed niced)")
        + f"; {traced} answers traced in all rounds; on/off ratios {', '.join(f'{r:.3f}' for r in ratios)}"
    )


def trace_costs(settings: Settings, mlflow: MlflowServer, n: int = 400) -> dict[str, float]:
    """What one trace costs, in ms: the request thread's wall time in `QueryTracer.record` (median), this process's
    CPU for recording and exporting (request and export threads), and the tracking server's CPU to ingest it (its
    idle CPU over the same time subtracted). Traces are recorded at about 50/s, a busy server's rate."""
    from ml.tracking.traces import QueryTracer

    assert mlflow.process is not None
    tracer = QueryTracer(settings.model_copy(update={"mlflow_tracking_uri": mlflow.uri}), {"tqa.environment": "bench"})
    answer = {"answer": "x [1]", "abstained": False, "confidence": 0.9, "answerer": "extractive",
              "sources": [{"url": "https://github.com/huggingface/transformers/blob/abc/a.py#L1-L2"}],
              "timings_ms": {"embed_ms": 5.0, "search_ms": 20.0, "rerank_ms": 3.0, "answer_ms": 2.0,
                             "total_ms": 30.0}}  # fmt: skip
    before = group_cpu_seconds(mlflow.process.pid)
    time.sleep(10)
    idle = (group_cpu_seconds(mlflow.process.pid) - before) / 10
    costs, started, server, cpu = [], time.monotonic(), group_cpu_seconds(mlflow.process.pid), time.process_time()
    for i in range(n):
        t = time.perf_counter()
        tracer.record(f"{i:032x}", "How is RMS normalization implemented in Llama?", answer, time.time_ns())
        costs.append((time.perf_counter() - t) * 1000)
        time.sleep(0.02)
    left = tracer.close(timeout_s=120)
    cpu = time.process_time() - cpu
    server = group_cpu_seconds(mlflow.process.pid) - server - idle * (time.monotonic() - started)
    return {
        "request_ms": percentile(costs, 50),
        "process_cpu_ms": cpu / n * 1000,
        "server_cpu_ms": server / n * 1000,
        "unsent": float(left),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of tracing off then on.")
    parser.add_argument(
        "--mlflow-nice", type=int, default=19, help="The tracking server's nice value while clients are measured."
    )
    parser.add_argument("--rate", type=float, default=200, help="Feedback posts per second.")
    parser.add_argument("--feedback-clients", type=int, default=16, help="Concurrent feedback posters.")
    parser.add_argument("--feedback-seconds", type=float, default=90, help="Posting time; the kill -9 ends it.")
    parser.add_argument("--outage-at", type=float, default=15, help="Seconds into posting when MLflow stops.")
    parser.add_argument("--outage", type=float, default=60, help="Seconds MLflow stays stopped.")
    parser.add_argument("--drain-timeout", type=float, default=600, help="Wait at most this long for forwarding.")
    parser.add_argument("--skip-durability", action="store_true", help="Only the tracing throughput part.")
    parser.add_argument("--skip-throughput", action="store_true", help="Only the feedback durability part.")
    parser.add_argument(
        "--own-cpu",
        action="store_true",
        help="Give the tracking server the last CPU alone and everything else the others, in both arms (its own "
        "host, as deployed, instead of a nice value).",
    )
    args = parser.parse_args()
    questions = [q.question for q in dev_queries()] + out_of_scope_questions()
    print(f"query tracing and feedback ({machine()})")
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.own_cpu and len(cpus) >= 2
    if pinned:
        os.sched_setaffinity(0, set(cpus[:-1]))  # inherited by tqa serve, Weaviate and the clients
        print(f"  tracking server on CPU {cpus[-1]} alone; tqa serve, Weaviate and the clients on CPUs {cpus[:-1]}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
        corpus = make_mini_corpus(base / "corpus")
        mlflow = MlflowServer(base / "mlflow", port=free_port()).start()
        if pinned:
            assert mlflow.process is not None
            pin_group(mlflow.process.pid, {cpus[-1]})
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        try:
            ingest(corpus, index, state, Embedder())
            if not args.skip_throughput:
                tracing_throughput(settings, base, mlflow, questions, args)
                cost = trace_costs(settings, mlflow)
                print(
                    f"  one trace costs: {cost['request_ms']:.3f} ms on the request thread (median), "
                    f"{cost['process_cpu_ms']:.2f} ms CPU in tqa serve (request + export threads), "
                    f"{cost['server_cpu_ms']:.2f} ms CPU in the tracking server; {cost['unsent']:.0f} unsent"
                )
            if not args.skip_durability:
                durability(settings, base, mlflow, questions, args)
        finally:
            state.close()
            index.close()
            mlflow.stop()


if __name__ == "__main__":
    main()
