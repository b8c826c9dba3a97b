"""The people's side under load: /ask throughput with MLflow query tracing off and on, and feedback durability.

Builds the mini corpus index in a temporary data dir, starts a real MLflow server and `tqa serve` (once with
TQA_TRACING=false, once with true), drives 8 concurrent clients, then posts ratings as fast as 8 clients can and
`kill -9`s the server right after the last acknowledgement, and counts acknowledged ratings missing from the store.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import machine, percentile
from ml.eval.retrieval import dev_queries, out_of_scope_questions
from ml.feedback.store import FeedbackStore
from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.tracking.server import MlflowServer
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port
from tests.support.serve import start_service


async def ask_load(url: str, questions: list[str], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        i = worker
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await http.post(f"{url}/ask", json={"question": questions[i % len(questions)]})
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1
            i += clients

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(w, http) for w in range(clients)))
    elapsed = time.monotonic() - started
    return {
        "answers": len(latencies),
        "errors": errors,
        "per_s": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
    }


async def feedback_burst(url: str, query_ids: list[str], clients: int, total: int) -> tuple[dict[str, str], float]:
    """Post `total` ratings; returns query id -> the comment of its last acknowledged rating, and ratings/s."""
    acked: dict[str, list[tuple[float, str]]] = {}
    sent = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total:
            sent += 1
            i = sent
            qid = query_ids[i % len(query_ids)]
            body = {"query_id": qid, "rating": "down", "comment": f"post {i}", "correction": f"answer {i}"}
            response = await http.post(f"{url}/feedback", json=body)
            if response.status_code == 201:
                acked.setdefault(qid, []).append((response.json()["recorded_at"], f"post {i}"))

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    rate = total / (time.monotonic() - started)
    return {qid: max(v)[1] for qid, v in acked.items()}, rate


def trace_cost_ms(settings: Settings, uri: str, n: int = 200) -> float:
    """Median time `QueryTracer.record` holds the request thread (span building; export is in the background)."""
    from ml.tracking.traces import QueryTracer

    tracer = QueryTracer(settings.model_copy(update={"mlflow_tracking_uri": uri}), {"tqa.environment": "bench"})
    answer = {"answer": "x [1]", "abstained": False, "confidence": 0.9, "answerer": "extractive",
              "sources": [{"url": "https://github.com/huggingface/transformers/blob/abc/a.py#L1-L2"}],
              "timings_ms": {"embed_ms": 5.0, "search_ms": 20.0, "rerank_ms": 3.0, "answer_ms": 2.0,
                             "total_ms": 30.0}}  # fmt: skip
    costs = []
    for i in range(n):
        started = time.perf_counter()
        tracer.record(f"{i:032x}", "How is RMS normalization implemented in Llama?", answer, time.time_ns())
        costs.append((time.perf_counter() - started) * 1000)
    return percentile(costs, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--feedback", type=int, default=1000, help="Ratings posted before the kill -9.")
    args = parser.parse_args()
    questions = [q.question for q in dev_queries()] + out_of_scope_questions()
    print(f"query tracing and feedback ({machine()})")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
        corpus = make_mini_corpus(base / "corpus")
        mlflow = MlflowServer(base / "mlflow", port=free_port()).start()
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        try:
            ingest(corpus, index, state, Embedder())
            results = {}
            for tracing in ("false", "true", "false", "true"):
                served = start_service(
                    settings, base, TQA_TRACING=tracing, TQA_MLFLOW_TRACKING_URI=mlflow.uri, TQA_ENVIRONMENT="local"
                )
                try:
                    asyncio.run(ask_load(served.url, questions, args.clients, 3))  # warm-up
                    r = asyncio.run(ask_load(served.url, questions, args.clients, args.seconds))
                    results.setdefault(tracing, []).append(r)
                    print(
                        f"  tracing {tracing:5}: {r['per_s']:.1f} answers/s, p50 {r['p50']:.0f} ms, "
                        f"p95 {r['p95']:.0f} ms, {r['errors']} errors ({r['answers']} answers)"
                    )
                    if tracing == "true" and len(results["true"]) == 2:
                        ids = [
                            httpx.post(f"{served.url}/ask", json={"question": q}).json()["query_id"]
                            for q in questions[:20]
                        ]
                        last, rate = asyncio.run(feedback_burst(served.url, ids, args.clients, args.feedback))
                        served.kill9()
                        with FeedbackStore(settings.feedback_db) as store:
                            lost = sum(1 for qid, c in last.items() if (store.feedback(qid) or {}).get("comment") != c)
                        print(
                            f"  feedback: {args.feedback} ratings at {rate:.0f}/s, kill -9 after the last 201: "
                            f"{lost} of {len(last)} answers lost their last acknowledged rating"
                        )
                finally:
                    served.stop()
            off = sum(r["per_s"] for r in results["false"]) / len(results["false"])
            on = sum(r["per_s"] for r in results["true"]) / len(results["true"])
            print(f"  throughput with tracing on / off: {on / off:.3f} ({on:.1f} vs {off:.1f} answers/s)")
            import mlflow as ml

            ml.set_tracking_uri(mlflow.uri)
            traces = ml.search_traces(
                locations=[ml.get_experiment_by_name(settings.trace_experiment).experiment_id],
                max_results=100000,
                return_type="list",
            )
            with FeedbackStore(settings.feedback_db) as store:
                logged = store.stats()["questions"]
            print(f"  traces in MLflow: {len(traces)}; questions in the query store: {logged}")
            cost = trace_cost_ms(settings, mlflow.uri)
            print(f"  on the request thread, one trace costs {cost:.2f} ms (median of 200)")
        finally:
            state.close()
            index.close()
            mlflow.stop()


if __name__ == "__main__":
    main()
