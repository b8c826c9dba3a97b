"""Warm search latency in-process (embed + hybrid query + re-rank) over the dev questions, p50/p95; and the fetch
of the top hits' whole symbols an answer adds (`ml.pipeline.with_bodies`)."""

from __future__ import annotations

import argparse
import time

from bench.common import machine, percentile
from ml.eval.retrieval import dev_queries, out_of_scope_questions
from ml.pipeline import QA, with_bodies
from ml.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    questions = [q.question for q in dev_queries()] + out_of_scope_questions()
    qa = QA(Settings())
    try:
        qa.warm_up()
        timings: list[float] = []
        parts: dict[str, list[float]] = {"embed_ms": [], "search_ms": [], "rerank_ms": []}
        bodies: list[float] = []
        for _ in range(args.rounds):
            for question in questions:
                split: dict[str, float] = {}
                started = time.perf_counter()
                hits = qa.retriever.search(question, k=args.k, timings=split)
                timings.append((time.perf_counter() - started) * 1000)
                fetched = time.perf_counter()
                with_bodies(qa.index, hits)
                bodies.append((time.perf_counter() - fetched) * 1000)
                for key in parts:
                    parts[key].append(split[key])
        print(f"warm search, {len(timings)} queries, k={args.k}, index of {qa.index.count()} chunks ({machine()})")
        print(f"  total   p50 {percentile(timings, 50):6.1f} ms   p95 {percentile(timings, 95):6.1f} ms")
        for key, values in parts.items():
            print(f"  {key:9s} p50 {percentile(values, 50):6.1f} ms   p95 {percentile(values, 95):6.1f} ms")
        p50, p95 = percentile(bodies, 50), percentile(bodies, 95)
        print(f"  symbols fetched for the answer p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")
    finally:
        qa.close()


if __name__ == "__main__":
    main()
