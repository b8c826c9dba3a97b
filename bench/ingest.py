"""Full ingest of the installed transformers package into a fresh data dir, then a second run with nothing changed.

Prints files, chunks, chunks/s, wall time and peak RSS of this process and of the Weaviate server, and the CPU
seconds each spent on the first run with the load average around it: on a shared machine the CPU seconds say what
the ingest costs (two idle cores give at most twice that per wall-clock second) when the wall time does not.
"""

from __future__ import annotations

import argparse
import json
import os
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        record = settings.data_dir / "weaviate.json"
        weaviate_pid = int(json.loads(record.read_text())["pid"]) if record.exists() else 0
        peak = {"weaviate": 0.0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(1.0):
                peak["weaviate"] = max(peak["weaviate"], rss_mb(weaviate_pid))

        threading.Thread(target=watch, daemon=True).start()
        state = StateStore(settings.state_db)
        load_before, ours, theirs = os.getloadavg()[0], time.process_time(), cpu_seconds(weaviate_pid)
        first = ingest(corpus, index, state, embedder)
        ours, theirs = time.process_time() - ours, cpu_seconds(weaviate_pid) - theirs
        load_after = os.getloadavg()[0]
        second = ingest(corpus, index, state, embedder)
        stop.set()
        state.close()
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  Weaviate start-up: {startup:.1f} s")
    print(
        f"  first run:  {first.files_seen} files, {first.chunks_written} chunks in {first.seconds:.0f} s "
        f"({first.chunks_per_second:.0f} chunks/s); {len(first.unparsable)} unparsable, {len(first.non_utf8)} non-UTF-8"
    )
    print(
        f"  first run CPU: tqa {ours:.0f} s, Weaviate {theirs:.0f} s -> {first.chunks_written / (ours + theirs):.0f} "
        f"chunks per CPU second (embedding: {embedder.backend_name}); load average {load_before:.1f} before, "
        f"{load_after:.1f} after"
    )
    print(f"  second run (nothing changed): {second.seconds:.1f} s, {second.chunks_written} chunks written")
    print(f"  peak RSS: tqa {own_peak:.0f} MB, Weaviate {peak['weaviate']:.0f} MB")


if __name__ == "__main__":
    main()
