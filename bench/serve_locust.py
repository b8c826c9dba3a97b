"""Locust against `tqa serve` (extractive answers, the mini corpus in a temporary data dir) at 8 and at 64 users.

The persona mix and think times of ops/load/locustfile.py, run headless by the load gate (ops/load/gate.py), one
stage per user count; the default 300 s each makes the 10-minute run. Prints, per stage: sustained requests/s,
p50/p95 latency, error rate and whether the gate's limits (ops/load/thresholds.yaml) hold. The think times (1-15 s
by persona) bound what few users can send: 8 users send about 2 requests/s however fast the server is, so the
achieved rate is printed next to users / mean think time (Locust rounds the persona mix, so it can be exceeded).

The soak: `--cluster --users 64 --seconds 600` serves from a real 3-node Weaviate cluster (replication factor 3,
tqa serve through node 0) and SIGKILLs node 2 halfway through (`--kill-at`, `--down-s`), restarts it and checks every
node holds the whole index again at the end; the machine's load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import machine, served
from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ops.load.gate import Gate, misses, run_stage
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port
from tests.support.weaviate_cluster import API_KEY, WeaviateCluster


def mean_think_s() -> float:
    """The persona mix's mean think time, seconds (in a process of its own: importing Locust patches sockets)."""
    code = (
        "import ops.load.locustfile as u; cs = [c for c in vars(u).values() if isinstance(c, type) "
        "and issubclass(c, u._Asker) and not c.abstract]; "
        "print(sum(c.weight * sum(c.wait_time(None) for _ in range(2000)) / 2000 for c in cs) "
        "/ sum(c.weight for c in cs))"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


@contextlib.contextmanager
def index_settings(base: Path, cluster: WeaviateCluster | None) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings and the serve environment for an embedded index in `base`, or for `cluster` through its node 0."""
    if cluster is None:
        settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
        env = {
            "TQA_WEAVIATE_PORT": str(settings.weaviate_port),
            "TQA_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
        }
    else:
        node = cluster.nodes[0]
        env = {
            "TQA_WEAVIATE_URL": f"http://127.0.0.1:{node.http_port}",
            "TQA_WEAVIATE_GRPC_URL": f"http://127.0.0.1:{node.grpc_port}",
            "TQA_WEAVIATE_API_KEY": API_KEY,
            "TQA_REPLICATION_FACTOR": "3",
        }
        settings = Settings(
            data_dir=base / "data",
            weaviate_url=env["TQA_WEAVIATE_URL"],
            weaviate_grpc_url=env["TQA_WEAVIATE_GRPC_URL"],
            weaviate_api_key=API_KEY,  # type: ignore[arg-type]
            replication_factor=3,
        )
    yield settings, {"TQA_DATA_DIR": str(settings.data_dir), "TQA_ANSWERER": "extractive", **env}


def node_fault(cluster: WeaviateCluster, kill_at: float, down_s: float, say: list[str]) -> threading.Thread:
    """A thread that SIGKILLs node 2 `kill_at` seconds from now and restarts it `down_s` later."""

    def run() -> None:
        time.sleep(kill_at)
        cluster.kill(2)
        say.append(f"node weaviate-2 killed (SIGKILL) at {kill_at:.0f} s, load average {os.getloadavg()[0]:.1f}")
        time.sleep(down_s)
        cluster.start_node(2)
        ready = cluster.wait_ready(2)
        say.append(f"node weaviate-2 restarted after {down_s:.0f} s down, ready in {ready:.1f} s")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=300, help="Seconds per stage (8 users, then 64).")
    parser.add_argument("--users", type=int, nargs="*", help="The gate's stages to run, by users (default: all).")
    parser.add_argument("--cluster", action="store_true", help="Serve from a 3-node cluster; kill a node midway.")
    parser.add_argument("--kill-at", type=float, help="Seconds into each stage to kill node 2 (default: half).")
    parser.add_argument("--down-s", type=float, default=60.0, help="How long the killed node stays down.")
    parser.add_argument("--out", type=Path, default=Path("artifacts/loadtest/serve_locust"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    gate = Gate.load(Path("ops/load/thresholds.yaml"))
    stages = [s for s in gate.stages if not args.users or s.users in args.users]
    if not stages:
        parser.error(f"--users must name stages of the gate: {[s.users for s in gate.stages]}")
    think = mean_think_s()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        base = Path(tmp)
        cluster = stack.enter_context(WeaviateCluster(base / "cluster")) if args.cluster else None
        settings, env = stack.enter_context(index_settings(base, cluster))
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        started = time.monotonic()
        report = ingest(make_mini_corpus(base / "corpus"), index, state, Embedder())
        state.close()
        index.close()
        where = "a 3-node cluster, replication factor 3" if cluster else "an embedded Weaviate"
        print(f"mini corpus: {report.total_chunks} chunks indexed in {time.monotonic() - started:.0f} s on {where}")
        args.out.mkdir(parents=True, exist_ok=True)
        with served(free_port(), env=env) as url:
            for stage in stages:
                stage.duration_s = args.seconds
                events: list[str] = []
                fault = None
                if cluster is not None:
                    kill_at = args.kill_at if args.kill_at is not None else args.seconds / 2
                    fault = node_fault(cluster, kill_at, args.down_s, events)
                loads: list[float] = []
                sampling = threading.Event()

                def sample(loads: list[float] = loads, sampling: threading.Event = sampling) -> None:
                    while not sampling.wait(10):
                        loads.append(os.getloadavg()[0])

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                numbers = run_stage(url, stage, args.out)
                sampling.set()
                if fault is not None:
                    fault.join(timeout=300)
                missed = misses(stage, numbers)
                verdict = "FAIL: " + "; ".join(missed) if missed else "pass"
                print(
                    f"{stage.users} users, {args.seconds} s: {numbers['rps']:.2f} requests/s sustained "
                    f"(users / mean think time: {stage.users / think:.1f}), {numbers['requests']:.0f} requests, "
                    f"p50 {numbers['p50_ms']:.0f} ms, p95 {numbers['p95_ms']:.0f} ms, "
                    f"errors {numbers['error_rate']:.3%} -> gate {verdict}"
                )
                if loads:
                    mean = sum(loads) / len(loads)
                    print(f"  load average (1 min) during the stage: mean {mean:.1f}, max {max(loads):.1f}")
                for event in events:
                    print(f"  {event}")
                if cluster is not None:
                    print(f"  objects per node at the end: {cluster.object_counts(settings.collection)}")
    print(f"Locust CSV and HTML in {args.out}")


if __name__ == "__main__":
    main()
