"""Freshness under `tqa watch`: seconds from a commit landing on the watched remote to the index holding it, and to
a question about it citing it.

Needs the configured data dir (TQA_DATA_DIR, ...) to hold a full ingest of the clone's HEAD (`tqa ingest --path
<clone>`). The index is rewound to HEAD~N in-process; a bare repository on this machine stands for upstream at that
commit, added to the clone as the remote `tqa-freshness` (removed at the end). A real `tqa watch` process polls it
every `--interval` seconds while this script pushes the N commits one at a time, each after the previous one was
answerable, and polls the index (through the same Weaviate server the watch started) for:

- stored: the commit's chunk is in the index;
- answerable: "Which PR made this change: <commit subject>?" has the commit among the top 5 hits' commits.

A lag includes the wait for the watch's next poll (uniform in 0..interval) and the sync itself. The index ends at the
clone's HEAD again. Work on a copy of a data dir you want to keep as it is during the run.

    TQA_DATA_DIR=/tmp/peft-copy python bench/history_freshness.py --path /tmp/peft --commits 10 --interval 5 \
        --repo-url https://github.com/huggingface/peft
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile  # noqa: E402

REMOTE = "tqa-freshness"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def wait_for_line(log: Path, proc: subprocess.Popen[bytes], needle: str, timeout: float) -> None:
    """Wait until the watch process's output has `needle` (its first sync report), or fail if it exits."""
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise SystemExit(f"tqa watch exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"tqa watch did not report a sync in {timeout:.0f} s")
        time.sleep(0.5)


def main() -> None:
    from ml.pipeline import QA, open_syncer
    from ml.retrieve_history import commits_of, fetch_commits
    from ml.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, required=True, help="The clone the data dir was ingested from")
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--interval", type=float, default=5.0, help="tqa watch --interval")
    parser.add_argument("--timeout", type=float, default=300.0, help="Give up on one commit after this many seconds")
    parser.add_argument("--repo-url", default=None, help="As given to tqa ingest (links must match the fresh index)")
    args = parser.parse_args()

    settings = Settings()
    repo = args.path.resolve()
    head = git(repo, "rev-parse", "HEAD").strip()
    line = git(repo, "rev-list", "--first-parent", "-n", str(args.commits + 1), "HEAD").split()[::-1]
    base, replay = line[0], line[1:]
    url = ["--repo-url", args.repo_url] if args.repo_url else []
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; data dir {settings.data_dir}; "
        f"{len(replay)} commits pushed one at a time; tqa watch --interval {args.interval:g}"
    )

    with ExitStack() as stack:
        started = time.monotonic()
        with ExitStack() as rewind:
            syncer = open_syncer(rewind, settings, repo, github=False, repo_url=args.repo_url)
            if syncer.state.get("head") != head:
                raise SystemExit(f"the data dir is at {syncer.state.get('head')}, not {head}: ingest the clone first")
            syncer.run(base)
        print(f"index rewound to {base[:12]} in {time.monotonic() - started:.1f} s")

        upstream = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tqa-upstream-"))) / "up.git"
        subprocess.run(["git", "init", "-q", "--bare", str(upstream)], check=True)
        git(repo, "push", "-q", str(upstream), f"{base}:refs/heads/main")
        git(repo, "remote", "add", REMOTE, str(upstream))
        stack.callback(lambda: git(repo, "remote", "remove", REMOTE))

        log = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tqa-watch-"))) / "watch.log"
        with log.open("wb") as out:
            watch = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", "watch", "--path", str(repo), "--remote", REMOTE]
                + ["--branch", "main", "--interval", str(args.interval), "--no-github", *url],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "200"},
            )

        def stop_watch() -> None:
            if watch.poll() is None:
                watch.send_signal(signal.SIGINT)  # its ExitStack closes the index and stops the Weaviate it started
                try:
                    watch.wait(120)
                except subprocess.TimeoutExpired:
                    watch.kill()
                    watch.wait()

        stack.callback(stop_watch)
        wait_for_line(log, watch, f"-> {base[:12]}", 600)

        qa = QA(settings)
        stack.callback(qa.close)
        qa.warm_up()
        stored_lags, answer_lags, missed = [], [], []
        for n, sha in enumerate(replay, 1):
            subject = git(repo, "log", "-1", "--format=%s", sha).strip()
            question = f"Which PR made this change: {subject}?"
            git(repo, "push", "-q", str(upstream), f"{sha}:refs/heads/main")
            landed = time.monotonic()
            stored = answered = None
            while time.monotonic() - landed < args.timeout:
                if watch.poll() is not None:
                    raise SystemExit(f"tqa watch exited with {watch.returncode}:\n{log.read_text()[-2000:]}")
                if stored is None and fetch_commits(qa.index, [sha]):
                    stored = time.monotonic() - landed
                if stored is not None:
                    if sha in commits_of(qa.retriever.search(question, k=5)):
                        answered = time.monotonic() - landed
                    break
                time.sleep(0.25)
            if stored is None:
                raise SystemExit(f"commit {sha[:12]} was not in the index {args.timeout:.0f} s after it landed")
            stored_lags.append(stored)
            if answered is None:
                missed.append(sha)
            else:
                answer_lags.append(answered)
            shown = f"{answered:.1f} s" if answered is not None else "not in the top 5"
            print(f"  {n}/{len(replay)} {sha[:12]}: stored after {stored:.1f} s, answerable {shown}", flush=True)

        # Every commit is in: the index is at the clone's HEAD again, as the data dir was handed over.
        wait_for_line(log, watch, f"-> {head[:12]}", 60)
        print(
            f"freshness over {len(replay)} commits (interval {args.interval:g} s): stored median "
            f"{percentile(stored_lags, 50):.1f} s, p95 {percentile(stored_lags, 95):.1f} s, "
            f"max {max(stored_lags):.1f} s; "
            f"answerable (commit in the top 5) for {len(answer_lags)}/{len(replay)}: median "
            f"{percentile(answer_lags, 50):.1f} s, p95 {percentile(answer_lags, 95):.1f} s; "
            f"load average {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
