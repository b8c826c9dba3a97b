"""Load on `tqa serve` from a bounded async client on 127.0.0.1: answers/s and errors at N concurrent clients.

Also times `tqa ask` from a shell with the server running (the CLI talks to it) and without (in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import httpx

from bench.common import machine, percentile, served
from ml.eval.retrieval import dev_queries, out_of_scope_questions
from tests.support.ports import free_port


async def load(
    url: str, questions: list[str], clients: int, seconds: float, max_requests: int, keep_alive: bool = False
) -> dict[str, float]:
    """`clients` concurrent askers for `seconds`. Each request opens its own connection unless `keep_alive`: the
    server's workers share one listening socket and a kept connection stays on the worker that accepted it, so 8
    kept connections can land 7 to 1 on two workers and halve throughput by chance from one run to the next."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + seconds

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        i = worker
        while time.monotonic() < deadline and sent < max_requests:
            sent += 1
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/ask", json={"question": questions[i % len(questions)]})
                if response.status_code != 200:
                    errors += 1
                else:
                    latencies.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError:
                errors += 1
            i += clients

    started = time.monotonic()
    limits = httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(w, http) for w in range(clients)))
    elapsed = time.monotonic() - started
    return {
        "answers": len(latencies),
        "errors": errors,
        "answers_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
    }


def time_cli(question: str, runs: int = 3) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ops.cli", "ask", question], capture_output=True, check=True)
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument(
        "--keep-alive", action="store_true", help="Keep one connection per client (workers may then get uneven shares)."
    )
    args = parser.parse_args()
    questions = [q.question for q in dev_queries()] + out_of_scope_questions()
    print(f"tqa serve load test ({machine()})")
    with served(free_port()) as url:
        asyncio.run(load(url, questions, args.clients, 3, 200, args.keep_alive))  # warm-up
        result = asyncio.run(load(url, questions, args.clients, args.seconds, args.max_requests, args.keep_alive))
        print(
            f"  {args.clients} clients, {args.seconds:.0f} s: {result['answers_per_s']:.1f} answers/s, "
            f"{result['errors']} errors, p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms "
            f"({result['answers']} answers, {'kept' if args.keep_alive else 'a new'} connection per "
            f"{'client' if args.keep_alive else 'request'})"
        )
        with_server = time_cli(questions[0])
        print(f"  `tqa ask` with the server running: {', '.join(f'{t:.2f}' for t in with_server)} s")
    cold = time_cli(questions[0], runs=1)
    print(f"  `tqa ask` without a server (starts Weaviate and loads the model): {cold[0]:.1f} s")


if __name__ == "__main__":
    main()
