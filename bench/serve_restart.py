"""Restart benchmark: `tqa serve` over the mini corpus, clients asking and rating through serving.client.post with
retries, the server SIGKILLed under load and started again on its port. Prints ratings acknowledged / found, clients
that gave up, and how long the service was away.

    .venv/bin/python -m bench.serve_restart [--clients 16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port
from tests.support.serve_faults import run_restart_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--before-s", type=float, default=20.0, help="Load before the kill.")
    parser.add_argument("--after-s", type=float, default=20.0, help="Load after the restarted server is ready.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqa-restart-") as tmp:
        base = Path(tmp)
        settings = Settings(data_dir=base / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
        index = WeaviateIndex.open(settings)
        state = StateStore(settings.state_db)
        try:
            ingest(make_mini_corpus(base / "corpus"), index, state, Embedder())
        finally:
            state.close()
            index.close()
        r = run_restart_scenario(settings, base, clients=args.clients, before_s=args.before_s, after_s=args.after_s)
    print(f"{args.clients} clients; tqa serve killed (SIGKILL) and ready again after {r.down_s:.1f} s")
    print(
        f"answers acknowledged: {r.asks_acked}; ratings acknowledged: {r.ratings_acked} "
        f"({r.acked_across_restart} in flight at the kill or sent while it was away, retried)"
    )
    print(f"ratings found in the store: {r.ratings_found}  lost: {r.lost}  clients that gave up: {r.gave_up}")
    for e in r.errors[:5]:
        print("error:", e)


if __name__ == "__main__":
    main()
