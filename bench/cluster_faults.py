"""Fault benchmark: a real 3-node Weaviate cluster (replication factor 3), one node killed with SIGKILL during
continuous QUORUM writes and reads, then restarted. Prints writes acknowledged/found, failed reads, catch-up time.

    .venv/bin/python -m bench.cluster_faults [--down-s 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.support.cluster_faults import run_fault_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-s", type=float, default=6.0, help="Load before the kill.")
    parser.add_argument("--down-s", type=float, default=10.0, help="How long the node stays down.")
    parser.add_argument("--after-s", type=float, default=4.0, help="Load after the node is ready again.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqa-cluster-") as tmp:
        r = run_fault_scenario(Path(tmp), before_s=args.before_s, down_s=args.down_s, after_s=args.after_s)
    print(f"writes acknowledged: {r.writes_acked}  found after recovery: {r.writes_found}  lost: {r.lost}")
    print(f"writes refused (not acknowledged): {r.writes_failed}")
    print(f"reads at QUORUM: {r.reads} ({r.reads_while_down} while a node was down)  failed: {r.reads_failed}")
    print(f"restarted node ready after {r.restart_ready_s:.1f} s, caught up {r.catch_up_s:.1f} s after ready")
    print(f"objects per node after recovery: {r.counts_after}")
    for e in r.errors[:5]:
        print("error:", e)


if __name__ == "__main__":
    main()
