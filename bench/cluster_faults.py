"""Fault benchmark: a real 3-node Weaviate cluster (replication factor 3), one node killed with SIGKILL during
continuous writes and reads, then restarted. Prints writes acknowledged/found, failed reads, catch-up time.

    .venv/bin/python -m bench.cluster_faults [--down-s 10]            # QUORUM writes and reads on Weaviate itself
    .venv/bin/python -m bench.cluster_faults --service [--down-s 20]  # tqa serve on the cluster: ingest, /ask, /search
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.common import percentile
from tests.support.cluster_faults import run_fault_scenario, run_service_fault_scenario


def weaviate_level(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tqa-cluster-") as tmp:
        r = run_fault_scenario(Path(tmp), before_s=args.before_s, down_s=args.down_s, after_s=args.after_s)
    print(f"writes acknowledged: {r.writes_acked}  found after recovery: {r.writes_found}  lost: {r.lost}")
    print(f"writes refused (not acknowledged): {r.writes_failed}")
    print(f"reads at QUORUM: {r.reads} ({r.reads_while_down} while a node was down)  failed: {r.reads_failed}")
    print(f"restarted node ready after {r.restart_ready_s:.1f} s, caught up {r.catch_up_s:.1f} s after ready")
    print(f"objects per node after recovery: {r.counts_after}")
    for e in r.errors[:5]:
        print("error:", e)


def service_level(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tqa-cluster-serve-") as tmp:
        r = run_service_fault_scenario(
            Path(tmp), before_s=args.before_s, down_s=args.down_s, after_s=args.after_s, clients=args.clients
        )
    print(f"initial index: {r.chunks_initial} chunks (replication factor 3, tqa serve through node 0)")
    print(
        f"ingest runs acknowledged: {r.ingest_runs_acked} ({r.chunks_acked} chunks)  found after recovery: "
        f"{r.chunks_found}  lost: {r.lost}  runs failed (not acknowledged): {r.ingest_runs_failed}"
    )
    print(f"runs' files found by /search through the service: {r.markers_found_via_search}/{r.ingest_runs_acked}")
    print(
        f"/ask + /search requests: {r.requests} ({r.requests_while_down} while a node was down)  failed: "
        f"{r.requests_failed}  p50 {percentile(r.latencies_ms, 50):.0f} ms  p95 {percentile(r.latencies_ms, 95):.0f} ms"
    )
    print(f"restarted node ready after {r.restart_ready_s:.1f} s, caught up {r.catch_up_s:.1f} s after ready")
    print(f"objects per node after recovery: {r.counts_after}  load average: {os.getloadavg()}")
    for e in r.errors[:5]:
        print("error:", e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", action="store_true", help="Through tqa serve, with ingest runs as the writes.")
    parser.add_argument("--before-s", type=float, default=6.0, help="Load before the kill.")
    parser.add_argument("--down-s", type=float, default=10.0, help="How long the node stays down.")
    parser.add_argument("--after-s", type=float, default=4.0, help="Load after the node is ready again.")
    parser.add_argument("--clients", type=int, default=2, help="Service level: concurrent /ask and /search clients.")
    args = parser.parse_args()
    (service_level if args.service else weaviate_level)(args)


if __name__ == "__main__":
    main()
