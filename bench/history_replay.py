"""Replay a real repository's last N first-parent commits one at a time through `tqa sync`: per-commit sync time
(median, p95, max) and whether the index at the end equals the fresh ingest it started from.

Needs the configured data dir (TQA_DATA_DIR, TQA_WEAVIATE_PORT, ...) to hold a full ingest of the clone's HEAD
(`tqa ingest --path <clone>`); it is rewound to HEAD~N (one sync, reported apart) and brought forward commit by
commit with the same `Syncer` that `tqa sync --rev` and `tqa watch` use. The comparison covers every chunk's id,
text, link, pin and blame history. Work on a copy of a data dir you want to keep as it is during the run.

    TQA_DATA_DIR=/tmp/peft-replay python bench/history_replay.py --path /tmp/peft --commits 200
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile  # noqa: E402


def snapshot(index: Any) -> dict[str, str]:
    """id -> digest of everything a chunk stores that a sync can change."""
    out = {}
    for c in index.iter_chunks():
        fields = [c.kind, c.text, c.path, c.url, c.commit, str(c.pr), str(c.issue), c.date, c.corpus_version]
        fields += [str(c.start_line), str(c.end_line), c.symbol, ",".join(c.history)]
        out[c.id] = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
    return out


def main() -> None:
    from ml.pipeline import open_syncer
    from ml.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, required=True, help="The clone the data dir was ingested from")
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--repo-url", default=None, help="As given to tqa ingest (links must match the fresh index)")
    args = parser.parse_args()

    settings = Settings()
    git = ["git", "-C", str(args.path)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    line = subprocess.run(
        [*git, "rev-list", "--first-parent", "-n", str(args.commits + 1), "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[::-1]
    base, replay = line[0], line[1:]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; data dir {settings.data_dir}; "
        f"replaying {len(replay)} commits to {head[:12]}"
    )
    with ExitStack() as stack:
        syncer = open_syncer(stack, settings, args.path, github=False, repo_url=args.repo_url)
        if syncer.state.get("head") != head:
            raise SystemExit(f"the data dir is at {syncer.state.get('head')}, not {head}: ingest the clone first")
        fresh = snapshot(syncer.index)
        if len(fresh) != syncer.index.count():
            raise SystemExit(f"read back {len(fresh)} of {syncer.index.count()} chunks; the comparison would be void")
        started = time.monotonic()
        rewind = syncer.run(base)[0]
        print(
            f"rewind to {base[:12]}: -{rewind.commits_removed} commits, {rewind.files_changed} files, "
            f"{rewind.chunks_deleted} chunks deleted, {rewind.chunks_written} written "
            f"in {time.monotonic() - started:.1f} s"
        )
        times, written = [], []
        for n, sha in enumerate(replay, 1):
            started = time.monotonic()
            report = syncer.run(sha)[0]
            times.append(time.monotonic() - started)
            written.append(report.chunks_written)
            if n % 25 == 0:
                print(
                    f"  {n}/{len(replay)}: median so far {percentile(times, 50):.2f} s, "
                    f"load average {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        end = snapshot(syncer.index)
    print(
        f"per-commit sync over {len(times)} commits: median {percentile(times, 50):.2f} s, "
        f"p95 {percentile(times, 95):.2f} s, max {max(times):.2f} s; chunks written per commit: median "
        f"{percentile([float(w) for w in written], 50):.0f}, max {max(written)}"
    )
    missing, extra = set(fresh) - set(end), set(end) - set(fresh)
    changed = [i for i in set(fresh) & set(end) if fresh[i] != end[i]]
    same = not (missing or extra or changed)
    print(
        f"index after replay equals the fresh ingest: {same} ({len(end)} chunks; {len(missing)} missing, "
        f"{len(extra)} extra, {len(changed)} differing)"
    )


if __name__ == "__main__":
    main()
