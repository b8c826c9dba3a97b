"""Locust against `tqa serve` (extractive answers, the mini corpus in a temporary data dir) at 8 and at 64 users.

The persona mix and think times of ops/load/locustfile.py, run headless by the load gate (ops/load/gate.py), one
stage per user count; the default 300 s each makes the 10-minute run. Prints, per stage: sustained requests/s,
p50/p95 latency, error rate and whether the gate's limits (ops/load/thresholds.yaml) hold. The think times (1-15 s
by persona) bound what few users can send: 8 users send about 2 requests/s however fast the server is, so the
achieved rate is printed next to users / mean think time (Locust rounds the persona mix, so it can be exceeded).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
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


def mean_think_s() -> float:
    """The persona mix's mean think time, seconds (in a process of its own: importing Locust patches sockets)."""
    code = (
        "import ops.load.locustfile as u; cs = [c for c in vars(u).values() if isinstance(c, type) "
        "and issubclass(c, u._Asker) and not c.abstract]; "
        "print(sum(c.weight * sum(c.wait_time(None) for _ in range(2000)) / 2000 for c in cs) "
        "/ sum(c.weight for c in cs))"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=300, help="Seconds per stage (8 users, then 64).")
    parser.add_argument("--out", type=Path, default=Path("artifacts/loadtest/serve_locust"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    gate = Gate.load(Path("ops/load/thresholds.yaml"))
    think = mean_think_s()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        started = time.monotonic()
        report = ingest(make_mini_corpus(base / "corpus"), index, state, Embedder())
        state.close()
        index.close()
        print(f"mini corpus: {report.total_chunks} chunks indexed in {time.monotonic() - started:.0f} s")
        env = {
            "TQA_DATA_DIR": str(settings.data_dir),
            "TQA_WEAVIATE_PORT": str(settings.weaviate_port),
            "TQA_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
            "TQA_ANSWERER": "extractive",
        }
        args.out.mkdir(parents=True, exist_ok=True)
        with served(free_port(), env=env) as url:
            for stage in gate.stages:
                stage.duration_s = args.seconds
                numbers = run_stage(url, stage, args.out)
                missed = misses(stage, numbers)
                verdict = "FAIL: " + "; ".join(missed) if missed else "pass"
                print(
                    f"{stage.users} users, {args.seconds} s: {numbers['rps']:.2f} requests/s sustained "
                    f"(users / mean think time: {stage.users / think:.1f}), {numbers['requests']:.0f} requests, "
                    f"p50 {numbers['p50_ms']:.0f} ms, p95 {numbers['p95_ms']:.0f} ms, "
                    f"errors {numbers['error_rate']:.3%} -> gate {verdict}"
                )
    print(f"Locust CSV and HTML in {args.out}")


if __name__ == "__main__":
    main()
