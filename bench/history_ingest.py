"""History benchmark: commits/s ingested, one-commit sync time, freshness lag under `watch`, and the dev-set
Recall@5 of the gold commit with and without code -> history links, intent boosts and routing (`history_eval.py`).

Runs on a real embedded Weaviate and the packaged MiniLM. The long history is synthetic unless `--repo` names a real
checkout: a script evolves real source files (the installed transformers package) over thousands of commits.

    python bench/history_ingest.py [--commits 2000] [--files 150] [--repo PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.history_eval import print_table, recall_table  # noqa: E402
from ml.index.embed import Embedder  # noqa: E402
from ml.index.engine import IndexSink  # noqa: E402
from ml.index.git_sync import sync_git  # noqa: E402
from ml.index.state import StateStore  # noqa: E402
from ml.index.watch import Syncer  # noqa: E402
from ml.index.weaviate_index import WeaviateIndex  # noqa: E402
from ml.retrieve import Retriever  # noqa: E402
from ml.settings import Settings  # noqa: E402
from ml.sources.git_checkout import fetch  # noqa: E402
from ml.sources.git_history import commit_chunks, iter_commits  # noqa: E402
from tests.support import history_repo  # noqa: E402
from tests.support.ports import free_port  # noqa: E402


def env(n: int) -> dict[str, str]:
    stamp = 1600000000 + n * 600
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": f"dev{n % 7}",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "bot",
        "GIT_COMMITTER_EMAIL": "bot@example.com",
        "GIT_AUTHOR_DATE": f"@{stamp} +0000",
        "GIT_COMMITTER_DATE": f"@{stamp} +0000",
    }


def synthetic_repo(path: Path, commits: int, files: int, seed: int = 0) -> Path:
    """A long history over real Python files: each commit edits 1-4 files; some add, rename or delete a file."""
    import transformers

    rng = random.Random(seed)
    src = Path(transformers.__file__).parent
    pool = sorted(p for p in (src / "models").rglob("*.py") if 2_000 < p.stat().st_size < 40_000)
    rng.shuffle(pool)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    live: list[str] = []
    for p in pool[:files]:
        rel = "src/transformers/" + p.relative_to(src).as_posix()
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, path / rel)
        live.append(rel)
    spare = pool[files:]
    git = ["git", "-C", str(path)]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Initial import (#1)"], check=True, env=env(0))
    for n in range(1, commits):
        roll = rng.random()
        if roll < 0.03 and spare:
            p = spare.pop()
            rel = "src/transformers/" + p.relative_to(src).as_posix()
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, path / rel)
            live.append(rel)
            msg = f"Add {Path(rel).stem} (#{n + 1})"
        elif roll < 0.04 and len(live) > 10:
            rel = live.pop(rng.randrange(len(live)))
            subprocess.run([*git, "rm", "-q", rel], check=True)
            msg = f"Remove {Path(rel).stem} (#{n + 1})"
        elif roll < 0.05:
            i = rng.randrange(len(live))
            new = live[i].replace(".py", "_v2.py")
            subprocess.run([*git, "mv", live[i], new], check=True)
            live[i] = new
            msg = f"Rename {Path(new).stem} (#{n + 1})"
        else:
            touched = rng.sample(live, k=min(len(live), rng.randint(1, 4)))
            for rel in touched:
                lines = (path / rel).read_text().splitlines()
                at = rng.randrange(1, max(2, len(lines)))
                if rng.random() < 0.5 and len(lines) > 20:
                    del lines[at : at + rng.randint(1, 3)]
                else:
                    lines.insert(at, f"{' ' * 8}# change {n}: tune threshold_{n} = {rng.random():.4f}")
                (path / rel).write_text("\n".join(lines) + "\n")
            msg = f"Tune thresholds in {Path(touched[0]).stem} (#{n + 1})\n\nFixes #{rng.randint(1, 9000)}"
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", msg], check=True, env=env(n))
    return path


def open_index(tmp: Path) -> tuple[WeaviateIndex, Settings]:
    settings = Settings(data_dir=tmp / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
    index = WeaviateIndex.open(settings)
    index.ensure_collection()
    return index, settings


def devset_recall(index: WeaviateIndex, embedder: Embedder, repo: Path) -> None:
    print(f"\nDev set: {len(history_repo.DEVSET)} why/when/which-PR questions over the test repository")
    print_table(recall_table(index, embedder, repo))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--files", type=int, default=150)
    ap.add_argument("--repo", type=Path, default=None, help="A real checkout with history (default: synthetic).")
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--skip-long", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tqa-history-bench-"))
    embedder = Embedder()
    embedder.embed_documents(["warm up"])
    print(f"machine: {os.cpu_count()} CPUs, embedder {embedder.model_name} on cpu; tmp {tmp}")

    # 1. The test repository: sync and the dev set.
    small = tmp / "minitf"
    history_repo.build(small)
    index, _ = open_index(tmp / "small")
    try:
        state = StateStore(tmp / "small" / "state.sqlite", "minitf")
        t = time.monotonic()
        report = sync_git(small, IndexSink(index, embedder), state, history_repo.OWNER_REPO, "main")
        print(
            f"test repo: {report.commits_added} commits, {report.chunks_written} chunks in {time.monotonic() - t:.1f} s"
        )
        devset_recall(index, embedder, small)
    finally:
        index.close()
    if args.skip_long:
        return

    # 2. A long history: throughput, one-commit sync, freshness.
    if args.repo:
        origin, kind = args.repo.resolve(), "real"
    else:
        t = time.monotonic()
        origin = synthetic_repo(tmp / "origin", args.commits, args.files)
        kind = "synthetic"
        print(
            f"\nsynthetic history: {args.commits} commits over {args.files} real transformers files "
            f"built in {time.monotonic() - t:.0f} s"
        )
    n_commits = int(
        subprocess.run(
            ["git", "-C", str(origin), "rev-list", "--count", "HEAD"], capture_output=True, text=True, check=True
        ).stdout
    )
    t = time.monotonic()
    chunks = sum(len(commit_chunks(c, "x", "o/r")) for c in iter_commits(origin, ["HEAD"]))
    parse_s = time.monotonic() - t
    print(
        f"[{kind}] parse+chunk history: {n_commits} commits, {chunks} chunks in {parse_s:.1f} s "
        f"= {n_commits / parse_s:.0f} commits/s (no embedding)"
    )

    checkout = tmp / "checkout"
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True)
    index, _ = open_index(tmp / "long")
    try:
        state = StateStore(tmp / "long" / "state.sqlite", checkout.name)
        sink = IndexSink(index, embedder)
        t = time.monotonic()
        report = sync_git(checkout, sink, state, "example/synthetic", "HEAD")
        full_s = time.monotonic() - t
        print(
            f"[{kind}] full sync (code + blame + commits + diffs, embedded and written): {report.commits_added} "
            f"commits, {report.files_changed} files, {report.chunks_written} chunks in {full_s:.0f} s = "
            f"{report.commits_added / full_s:.1f} commits/s end to end"
        )

        # One new commit touching a few files in the remote, then one incremental sync.
        work = tmp / "work"
        subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True)
        subprocess.run(["git", "-C", str(origin), "config", "receive.denyCurrentBranch", "ignore"], check=True)
        times = []
        for n in range(3):
            files = subprocess.run(
                ["git", "-C", str(work), "ls-files", "*.py"], capture_output=True, text=True, check=True
            ).stdout.split()[n * 5 : n * 5 + 5]
            for rel in files:
                with (work / rel).open("a") as fh:
                    fh.write(f"\n# incremental change {n}\n")
            subprocess.run(["git", "-C", str(work), "commit", "-qam", f"Incremental change {n} (#9{n})"], check=True)
            subprocess.run(["git", "-C", str(checkout), "pull", "-q", str(work), "main"], check=True)
            t = time.monotonic()
            r = sync_git(checkout, sink, state, "example/synthetic", "HEAD")
            times.append(time.monotonic() - t)
            assert r.commits_added == 1 and r.files_changed == len(files)
        print(
            f"[{kind}] one-commit sync, 5 changed files: {', '.join(f'{x:.2f}' for x in times)} s "
            f"(median {sorted(times)[1]:.2f} s)"
        )

        # Freshness: watch polls the remote every `interval`; a commit lands at a random moment; how long until a
        # question about it retrieves its commit?
        remote_repo = tmp / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(remote_repo)], check=True)
        subprocess.run(["git", "-C", str(checkout), "remote", "set-url", "origin", str(remote_repo)], check=True)
        subprocess.run(["git", "-C", str(work), "remote", "set-url", "origin", str(remote_repo)], check=True)
        syncer = Syncer(checkout, sink, state, "example/synthetic", staging=tmp / "staging.jsonl")
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                started = time.monotonic()
                syncer.run(fetch(checkout, "origin", "main"))
                stop.wait(max(0.0, args.interval - (time.monotonic() - started)))

        watcher = threading.Thread(target=loop, daemon=True)
        watcher.start()
        retriever = Retriever(index, embedder)
        lags = []
        rng = random.Random(1)
        for n in range(3):
            time.sleep(rng.uniform(0, args.interval))
            word = f"zanzibar{n}quokka"
            rel = subprocess.run(
                ["git", "-C", str(work), "ls-files", "*.py"], capture_output=True, text=True, check=True
            ).stdout.split()[20 + n]
            with (work / rel).open("a") as fh:
                fh.write(f"\n# {word}\n")
            subprocess.run(["git", "-C", str(work), "commit", "-qam", f"Fix {word} handling (#8{n})"], check=True)
            subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)
            pushed = time.monotonic()
            sha = subprocess.run(
                ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            while True:
                hits = retriever.search(f"Which PR fixed {word} handling?", k=5)
                if any(h.chunk.commit == sha for h in hits):
                    lags.append(time.monotonic() - pushed)
                    break
                if time.monotonic() - pushed > 4 * args.interval:
                    lags.append(float("inf"))
                    break
                time.sleep(0.5)
        stop.set()
        watcher.join()
        print(
            f"[{kind}] freshness lag with watch --interval {args.interval:.0f}: "
            f"{', '.join(f'{x:.1f}' for x in lags)} s (max {max(lags):.1f} s)"
        )
    finally:
        index.close()


if __name__ == "__main__":
    main()
