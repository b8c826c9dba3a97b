"""Full ingest of the installed transformers package into a fresh data dir, then a second run with nothing changed.

Prints files, chunks, chunks/s, wall time and peak RSS of this process and of the Weaviate server.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

from bench.common import machine
from ml.index.embed import make_embedder
from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from ml.sources.corpus import resolve_corpus
from tests.support.ports import free_port


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None, help="Default: a new temporary directory.")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="tqa-bench-"))
    settings = Settings(data_dir=data_dir, weaviate_port=free_port(), weaviate_grpc_port=free_port())
    corpus = resolve_corpus()
    print(f"ingest of transformers {corpus.version} into {data_dir} ({machine()})")
    embedder = make_embedder(settings)
    started = time.monotonic()
    with WeaviateIndex.open(settings) as index:
        startup = time.monotonic() - started
        pid_file = settings.data_dir / "weaviate.pid"
        weaviate_pid = int(pid_file.read_text()) if pid_file.exists() else 0
        peak = {"weaviate": 0.0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(1.0):
                peak["weaviate"] = max(peak["weaviate"], rss_mb(weaviate_pid))

        threading.Thread(target=watch, daemon=True).start()
        state = StateStore(settings.state_db)
        first = ingest(corpus, index, state, embedder)
        second = ingest(corpus, index, state, embedder)
        stop.set()
        state.close()
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  Weaviate start-up: {startup:.1f} s")
    print(
        f"  first run:  {first.files_seen} files, {first.chunks_written} chunks in {first.seconds:.0f} s "
        f"({first.chunks_per_second:.0f} chunks/s); {len(first.unparsable)} unparsable, {len(first.non_utf8)} non-UTF-8"
    )
    print(f"  second run (nothing changed): {second.seconds:.1f} s, {second.chunks_written} chunks written")
    print(f"  peak RSS: tqa {own_peak:.0f} MB, Weaviate {peak['weaviate']:.0f} MB")


if __name__ == "__main__":
    main()
