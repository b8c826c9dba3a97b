"""Runs every benchmark against the configured index (`make bench`); each prints its own numbers."""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    "bench.retrieval_quality",
    "bench.search_latency",
    "bench.serve_load",
    "bench.ingest",
    "bench.lora_tiny",
    "bench.ct_cycle",
]


def main() -> int:
    failed = []
    for module in BENCHES:
        print(f"\n=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
