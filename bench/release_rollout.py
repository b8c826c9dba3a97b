"""Releases on one machine: failed requests across HAProxy weight changes under load, and how fast a bad canary
is detected and rolled back (two `tqa serve` slots over the mini corpus index, real Prometheus and MLflow).

Prints: requests and failures across N weight changes; seconds from `kill -9` of a canary slot to its rollback,
with the analysis interval; requests the canary answered against its weight x its traffic, and failed requests.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import machine
from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.tracking.server import MlflowServer
from ops.release.proxy import Haproxy, Slot
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port
from tests.support.release import Traffic, register_version, release_env, tqa

MODEL = "tqa-release-bench"


def weight_changes(env: dict[str, str], data_dir: Path, changes: int, users: int) -> dict[str, float]:
    """`changes` runtime weight changes between the two slots (both serve v1) under `users` sticky users."""
    state = json.loads((data_dir / "release" / "state.json").read_text())
    proxy = Haproxy(data_dir / "release", int(env["TQA_PROXY_PORT"]))
    ports = {name: s["port"] for name, s in state["slots"].items()}
    with Traffic(proxy.url, users=users, think_s=0.02) as traffic:
        time.sleep(2)
        for i in range(changes):
            blue = (0, 25, 50, 75, 100)[i % 5]
            proxy.apply(
                [
                    Slot("blue", f"127.0.0.1:{ports['blue']}", blue, blue == 0),
                    Slot("green", f"127.0.0.1:{ports['green']}", 100 - blue, blue == 100),
                ]
            )
            time.sleep(0.5)
        time.sleep(1)
    return {"requests": len(traffic.outcomes), "failed": len(traffic.failures()), "changes": changes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--interval", type=float, default=10.0, help="Canary analysis interval, seconds.")
    parser.add_argument("--weight", type=int, default=20, help="The bad canary's first step, percent.")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        ingest(make_mini_corpus(base / "corpus"), index, state, Embedder())
        state.close()
        with MlflowServer(base / "mlflow", port=free_port()) as mlflow_server:
            settings = settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.uri})
            good = register_version(settings, MODEL, base / "v1", abstain_threshold=0.0)
            same = register_version(settings, MODEL, base / "v1b", abstain_threshold=0.0)
            bad = register_version(settings, MODEL, base / "v2", alpha=0.6)
            env = release_env(
                settings.data_dir, settings.weaviate_port, settings.weaviate_grpc_port, mlflow_server.uri, MODEL
            )
            try:
                for version, where in ((good, "production"), (same, "canary")):
                    result = tqa(env, "release", "deploy", "--env", where, "--version", version)
                    assert result.returncode == 0, result.stderr
                numbers = weight_changes(env, settings.data_dir, args.changes, args.users)
                print(
                    f"weight changes under {args.users} users: {numbers['changes']} changes, "
                    f"{numbers['requests']} requests, {numbers['failed']} failed"
                )
                result = tqa(env, "release", "deploy", "--env", "canary", "--version", bad)
                assert result.returncode == 0, result.stderr
                proxy_url = f"http://127.0.0.1:{env['TQA_PROXY_PORT']}"
                events = settings.data_dir / "release" / "events.jsonl"
                seen = len(events.read_text().splitlines())
                with Traffic(proxy_url, users=4) as traffic:
                    command = [sys.executable, "-m", "ops.cli", "release", "canary", "--steps", f"{args.weight},100"]
                    process = subprocess.Popen([*command, "--interval", str(args.interval)], env=env, text=True)
                    while not any('"step"' in line for line in events.read_text().splitlines()[seen:]):
                        time.sleep(0.2)
                    started = time.time()
                    time.sleep(args.interval / 3)
                    state = json.loads((settings.data_dir / "release" / "state.json").read_text())
                    slot = psutil.Process(state["slots"][state["rollout"]["slot"]]["pid"])
                    killed = time.time()
                    for p in [slot, *slot.children(recursive=True)]:
                        p.send_signal(signal.SIGKILL)
                    process.wait(timeout=120)
                    ended = time.time()
                    time.sleep(1)
                served = traffic.versions(started, ended)
                total = sum(served.values())
                print(
                    f"crashed canary: {'rolled back' if process.returncode == 1 else 'NOT rolled back'} "
                    f"{ended - killed:.1f} s after kill -9 (analysis interval {args.interval:.0f} s)"
                )
                print(
                    f"canary answered {served[bad]} of {total} requests during its rollout "
                    f"(weight x traffic = {args.weight / 100 * total:.0f}); failed requests: {len(traffic.failures())}"
                )
            finally:
                tqa(env, "release", "down")
        index.close()


if __name__ == "__main__":
    main()
