"""Releases on one machine: failed requests across HAProxy weight changes under load, and how fast a bad canary
is detected and rolled back (two `tqa serve` slots over the mini corpus index, real Prometheus and MLflow).

Prints: requests and failures across N weight changes; for three bad canaries that keep answering (one abstains on
everything: abstain_threshold 1.0; one fails half its answers with 500s; one answers 1.5 s late: the release-drill
faults TQA_FAULT_ERROR_SHARE, TQA_FAULT_DELAY_S), the seconds from its first step (when it starts taking traffic) to
the analysis' rollback, with the analysis interval, the breaches, and the requests it served against its weight x
its traffic; seconds from `kill -9` of a canary slot to its rollback; failed requests throughout.
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
from ops.load.gate import locust_command, read_stats
from ops.release.proxy import Haproxy, Slot
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port
from tests.support.release import Traffic, register_version, release_env, tqa

MODEL = "tqa-release-bench"


def _proxy_and_ports(env: dict[str, str], data_dir: Path) -> tuple[Haproxy, dict[str, int]]:
    """The release proxy and each slot's port, as the rollout state records them."""
    state = json.loads((data_dir / "release" / "state.json").read_text())
    ports = {name: s["port"] for name, s in state["slots"].items()}
    return Haproxy(data_dir / "release", int(env["TQA_PROXY_PORT"])), ports


def _change_weights(proxy: Haproxy, ports: dict[str, int], changes: int, every_s: float) -> None:
    for i in range(changes):
        blue = (0, 25, 50, 75, 100)[i % 5]
        proxy.apply(
            [
                Slot("blue", f"127.0.0.1:{ports['blue']}", blue, blue == 0),
                Slot("green", f"127.0.0.1:{ports['green']}", 100 - blue, blue == 100),
            ]
        )
        time.sleep(every_s)


def weight_changes(env: dict[str, str], data_dir: Path, changes: int, users: int) -> dict[str, float]:
    """`changes` runtime weight changes between the two slots (both serve v1) under `users` sticky users."""
    proxy, ports = _proxy_and_ports(env, data_dir)
    with Traffic(proxy.url, users=users, think_s=0.02) as traffic:
        time.sleep(2)
        _change_weights(proxy, ports, changes, 0.5)
        time.sleep(1)
    return {"requests": len(traffic.outcomes), "failed": len(traffic.failures()), "changes": changes}


def weight_changes_locust(
    env: dict[str, str], data_dir: Path, changes: int, users: int, every_s: float, out: Path
) -> dict[str, float]:
    """The same changes under `users` Locust users (the load gate's persona mix and think times, one session
    cookie per user), one every `every_s` once all users have started; failures as Locust counts them."""
    proxy, ports = _proxy_and_ports(env, data_dir)
    ramp_s = 10
    seconds = int(ramp_s + changes * every_s + 5)
    prefix = out / f"weights{users}"
    locust = subprocess.Popen(locust_command(proxy.url, users, seconds, prefix), stdout=subprocess.DEVNULL)
    try:
        time.sleep(ramp_s)
        _change_weights(proxy, ports, changes, every_s)
        locust.wait(timeout=seconds + 120)
    finally:
        if locust.poll() is None:
            locust.kill()
    return {**read_stats(prefix), "changes": changes}


def bad_answers(env: dict[str, str], data_dir: Path, version: str, weight: int, interval: float, kind: str) -> None:
    """Canary `version` under 4 sticky users until the analysis rolls it back; prints what it cost the users."""
    result = tqa(env, "release", "deploy", "--env", "canary", "--version", version)
    assert result.returncode == 0, result.stderr
    events = data_dir / "release" / "events.jsonl"
    seen = len(events.read_text().splitlines())
    with Traffic(f"http://127.0.0.1:{env['TQA_PROXY_PORT']}", users=4) as traffic:
        time.sleep(2)
        command = [sys.executable, "-m", "ops.cli", "release", "canary", "--steps", f"{weight},100"]
        result = subprocess.run([*command, "--interval", str(interval)], env=env, capture_output=True, text=True)
        time.sleep(1)
    log = [json.loads(line) for line in events.read_text().splitlines()[seen:]]
    step = next((e for e in log if e["event"] == "step"), None)
    if step is None:
        print(f"{kind} canary: never took traffic (exit {result.returncode}): {result.stderr[-500:]}")
        return
    ended = next((e for e in log if e["event"] == "rollback"), None)
    if result.returncode != 1 or ended is None:
        print(f"{kind} canary: NOT rolled back (exit {result.returncode}): {result.stderr[-500:]}")
        return
    # Every answer counts here, errors included (a 500 still names the version that sent it).
    during = [o for o in traffic.outcomes if step["time"] <= o.time < ended["time"]]
    mine = [o for o in during if o.version == version]
    total, seconds = len(during), ended["time"] - step["time"]
    one_interval = total / seconds * interval if seconds else 0.0
    # A rollback for a canary that stopped answering its readiness probe carries a reason but no analysis numbers.
    numbers = ended.get("numbers") or {"canary": {"requests": 0}, "breaches": [f"no analysis: {ended['reason']}"]}
    canary = numbers["canary"]
    print(
        f"{kind} canary: rolled back {seconds:.1f} s after it started taking traffic (analysis interval "
        f"{interval:.0f} s, bar 60 s); breaches: {'; '.join(numbers['breaches'][:2])}; ..."
    )
    print(
        f"  it served {len(mine)} of {total} requests during its rollout (weight x that traffic = "
        f"{weight / 100 * total:.0f}; weight x one interval's traffic = {weight / 100 * one_interval:.0f}); "
        f"after the rollback: {sum(o.version == version for o in traffic.outcomes if o.time >= ended['time'] + 0.5)}; "
        f"failed requests: {len(traffic.failures())}, all from it: "
        f"{all(o.version == version for o in traffic.failures())}; the analysis counted {canary['requests']:.0f} "
        f"user requests and {canary.get('probe_requests') or 0:.0f} probe requests on it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument(
        "--locust", action="store_true", help="Weight changes under Locust users (persona mix) instead of threads."
    )
    parser.add_argument("--every", type=float, default=3.0, help="Seconds between weight changes with --locust.")
    parser.add_argument("--interval", type=float, default=10.0, help="Canary analysis interval, seconds.")
    parser.add_argument("--weight", type=int, default=20, help="The bad canary's first step, percent.")
    parser.add_argument("--skip-crash", action="store_true", help="Leave out the kill -9 of a canary.")
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
            abstaining = register_version(settings, MODEL, base / "v3", abstain_threshold=1.0)
            erroring = register_version(settings, MODEL, base / "v4", abstain_threshold=0.0, fault_error_share=0.5)
            slow = register_version(settings, MODEL, base / "v5", abstain_threshold=0.0, fault_delay_s=1.5)
            env = release_env(
                settings.data_dir, settings.weaviate_port, settings.weaviate_grpc_port, mlflow_server.uri, MODEL
            )
            try:
                for version, where in ((good, "production"), (same, "canary")):
                    result = tqa(env, "release", "deploy", "--env", where, "--version", version)
                    assert result.returncode == 0, result.stderr
                if args.changes and args.locust:
                    numbers = weight_changes_locust(env, settings.data_dir, args.changes, args.users, args.every, base)
                    print(
                        f"weight changes under {args.users} Locust users: {numbers['changes']} changes "
                        f"{args.every:.0f} s apart, {numbers['requests']:.0f} requests ({numbers['rps']:.1f}/s, "
                        f"p95 {numbers['p95_ms']:.0f} ms), {numbers['failures']:.0f} failed"
                    )
                elif args.changes:
                    numbers = weight_changes(env, settings.data_dir, args.changes, args.users)
                    print(
                        f"weight changes under {args.users} users: {numbers['changes']} changes, "
                        f"{numbers['requests']} requests, {numbers['failed']} failed"
                    )
                for kind, version in (("abstaining", abstaining), ("erroring", erroring), ("slow", slow)):
                    bad_answers(env, settings.data_dir, version, args.weight, args.interval, kind)
                if not args.skip_crash:
                    result = tqa(env, "release", "deploy", "--env", "canary", "--version", bad)
                    assert result.returncode == 0, result.stderr
                    proxy_url = f"http://127.0.0.1:{env['TQA_PROXY_PORT']}"
                    events = settings.data_dir / "release" / "events.jsonl"
                    seen = len(events.read_text().splitlines())
                    with Traffic(proxy_url, users=4) as traffic:
                        steps = f"{args.weight},100"
                        command = [sys.executable, "-m", "ops.cli", "release", "canary", "--steps", steps]
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
                        f"(weight x traffic = {args.weight / 100 * total:.0f}); "
                        f"failed requests: {len(traffic.failures())}"
                    )
            finally:
                tqa(env, "release", "down")
        index.close()


if __name__ == "__main__":
    main()
