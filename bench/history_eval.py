"""Dev-set Recall@5 of the right commit through the real retriever and a real embedded Weaviate, with the history steps
(code -> history links, intent boost, routing) switched on and off.

The test repository of `tests/support/history_repo.py` is synced into a fresh index (`tqa sync`'s path); each of its 25
why/when/which-PR questions names its gold commit by PR number. A question counts as found when a history chunk
(commit, diff, PR, issue) of a gold commit is among the top 5 hits.

    python bench/history_eval.py

With `--devset`, a hand-written dev set on a real repository instead (`ml/eval/data/history_peft.jsonl`: who /
when / which PR / what changed / since when questions with gold SHAs checked against `git log`, and questions about
changes that never happened), over an index already built with `tqa ingest --path <clone>` in the configured data
dir. Per split it reports: the gold commit among the top 5 hits' commits, answers containing what was asked (author;
date and PR; the removed and the added value), and never-happened questions abstained; `--calibrate` picks the
history support threshold on the tune split and reports the test split at that threshold.

    TQA_DATA_DIR=/tmp/peft-data python bench/history_eval.py --devset ml/eval/data/history_peft.jsonl \
        --verify /tmp/peft --calibrate
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.retrieve import RetrievalConfig, Retriever  # noqa: E402
from ml.retrieve_history import commits_of, fetch_diffs  # noqa: E402
from tests.support import history_repo  # noqa: E402

ROUTE_OFF = 2.0  # an intent threshold no question reaches
VARIANTS: dict[str, dict[str, Any]] = {
    "hybrid only (history steps off)": dict(history=False),
    "+ intent boost": dict(history=True, history_links=False, history_route_threshold=ROUTE_OFF),
    "+ intent boost + routing": dict(history=True, history_links=False),
    "+ code->history links only": dict(history=True, history_boost=0.0, history_route_threshold=ROUTE_OFF),
    "+ links + intent boost": dict(history=True, history_route_threshold=ROUTE_OFF),
    "+ links + intent boost + routing, one commit's chunks not spread": dict(history=True, history_per_commit=0),
    "+ links + intent boost + routing (default)": dict(history=True),
}


def recall_table(index: Any, embedder: Any, repo: Path, k: int = 5) -> list[tuple[str, float, float, list[str]]]:
    """(variant, Recall@k, MRR@k, missed questions) for each variant on the test repository's dev set."""
    golds = [(q, history_repo.gold_shas(repo, prs)) for q, prs in history_repo.DEVSET]
    rows = []
    for name, flags in VARIANTS.items():
        retriever = Retriever(index, embedder, replace(RetrievalConfig(), **flags))
        found, rr, misses = 0, 0.0, []
        for question, gold in golds:
            ranked = commits_of(retriever.search(question, k=k))
            rank = next((i for i, sha in enumerate(ranked) if sha in gold), None)
            if rank is None:
                misses.append(question)
            else:
                found += 1
                rr += 1 / (1 + rank)
        rows.append((name, found / len(golds), rr / len(golds), misses))
    return rows


def print_table(rows: list[tuple[str, float, float, list[str]]], k: int = 5) -> None:
    print(f"| variant | Recall@{k} | MRR@{k} |\n| --- | --- | --- |")
    for name, recall, mrr, _ in rows:
        print(f"| {name} | {recall:.2f} | {mrr:.2f} |")
    print("misses (default):", "; ".join(rows[-1][3]) or "none")


def main() -> None:
    from ml.index.embed import Embedder
    from ml.index.engine import IndexSink
    from ml.index.git_sync import sync_git
    from ml.index.state import StateStore
    from ml.index.weaviate_index import WeaviateIndex
    from ml.settings import Settings
    from tests.support.ports import free_port

    tmp = Path(tempfile.mkdtemp(prefix="tqa-history-eval-"))
    repo = tmp / "minitf"
    history_repo.build(repo)
    embedder = Embedder()
    settings = Settings(data_dir=tmp / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
    print(f"machine: {os.cpu_count()} CPUs, embedder {embedder.model_name}; tmp {tmp}")
    with WeaviateIndex.open(settings) as index:
        index.ensure_collection()
        state = StateStore(settings.state_db, "minitf")
        started = time.monotonic()
        report = sync_git(repo, IndexSink(index, embedder), state, history_repo.OWNER_REPO, "main")
        state.close()
        print(
            f"test repository: {report.commits_added} commits, {report.files_changed} files, "
            f"{report.chunks_written} chunks synced in {time.monotonic() - started:.1f} s; "
            f"by kind {index.counts_by_kind()}"
        )
        print(f"\nDev set: {len(history_repo.DEVSET)} why/when/which-PR questions, Recall@5 of the gold commit")
        print_table(recall_table(index, embedder, repo))


def load_devset(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        if row["kind"] not in ("who", "when", "pr", "what", "first", "never") or row["split"] not in ("tune", "test"):
            raise ValueError(f"{path}: {row['id']} has kind {row['kind']!r} / split {row['split']!r}")
        if (row["kind"] == "never") != (not row["gold"]):
            raise ValueError(f"{path}: {row['id']}: a never-happened question has no gold, every other one has")
    return rows


def verify_devset(rows: list[dict[str, Any]], clone: Path) -> list[str]:
    """Problems of the dev set against a clone: unknown gold SHAs, expected values absent from the gold diff."""
    problems = []
    for row in rows:
        for sha in row["gold"]:
            if subprocess.run(["git", "-C", str(clone), "cat-file", "-e", f"{sha}^{{commit}}"]).returncode != 0:
                problems.append(f"{row['id']}: {sha} is not a commit of {clone}")
        if row["kind"] == "what":
            shown = subprocess.run(
                ["git", "-C", str(clone), "show", "--format=", row["gold"][0]], capture_output=True, text=True
            ).stdout
            removed = "\n".join(x for x in shown.splitlines() if x.startswith("-"))
            added = "\n".join(x for x in shown.splitlines() if x.startswith("+"))
            before, after = row["expect"]
            if before not in removed or after not in added:
                problems.append(f"{row['id']}: {before!r} not removed or {after!r} not added by {row['gold'][0][:12]}")
        if row["kind"] == "first":
            log = subprocess.run(
                ["git", "-C", str(clone), "log", "-1", "--format=%cs %s", row["gold"][0]],
                capture_output=True,
                text=True,
            ).stdout
            if not all(e.lstrip("PR ") in log for e in row["expect"]):
                problems.append(f"{row['id']}: {row['expect']} not in {log.strip()!r}")
    return problems


def run_devset(rows: list[dict[str, Any]], k: int = 10) -> list[dict[str, Any]]:
    """Retrieve and answer each question once (support threshold 0); the abstention is decided per threshold later."""
    from ml.answer.history import HistoryAnswerer
    from ml.pipeline import QA
    from ml.settings import Settings

    qa = QA(Settings())
    answerer = HistoryAnswerer(threshold=0.0, diffs=lambda sha: fetch_diffs(qa.index, sha))
    out = []
    try:
        qa.warm_up()
        for row in rows:
            started = time.perf_counter()
            hits = qa.retriever.search(row["question"], k=k)
            answer = answerer.answer(row["question"], hits)
            out.append(
                {
                    **row,
                    "top5": commits_of(hits[:5]),
                    "support": answer.confidence if answer else 0.0,
                    "text": answer.answer if answer else "",
                    "ms": (time.perf_counter() - started) * 1000,
                }
            )
    finally:
        qa.close()
    return out


def scores(results: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    """Gold in top 5, answers containing what was asked, never-happened abstained, and the balanced decision score."""
    pos = [r for r in results if r["kind"] != "never"]
    neg = [r for r in results if r["kind"] == "never"]
    top5 = sum(any(g in r["top5"] for g in r["gold"]) for r in pos) / max(len(pos), 1)
    answered = [r for r in pos if r["support"] >= threshold]
    correct = sum(all(e in r["text"] for e in r["expect"]) for r in answered) / max(len(pos), 1)
    abstained = sum(r["support"] < threshold for r in neg) / max(len(neg), 1)
    return {
        "n": len(pos),
        "never_n": len(neg),
        "top5": top5,
        "answer_ok": correct,
        "answered": len(answered) / max(len(pos), 1),
        "never_abstained": abstained,
        "balanced": (len(answered) / max(len(pos), 1) + abstained) / 2,
    }


def calibrate(results: list[dict[str, Any]]) -> float:
    """The threshold with the best balanced decision score on these results (the lowest among ties)."""
    grid = [round(t * 0.05, 2) for t in range(21)]
    return max(grid, key=lambda t: (round(scores(results, t)["balanced"], 6), -t))


def real_repo(args: argparse.Namespace) -> None:
    from ml.answer.history import SUPPORT_THRESHOLD
    from ml.settings import Settings

    rows = load_devset(Path(args.devset))
    if args.verify:
        problems = verify_devset(rows, Path(args.verify))
        print(f"dev set checked against {args.verify}: {len(problems)} problems")
        for p in problems:
            print("  ", p)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; index {Settings().data_dir}; "
        f"{len(rows)} questions, top {args.k} hits"
    )
    results = run_devset(rows, k=args.k)
    tune = [r for r in results if r["split"] == "tune"]
    test = [r for r in results if r["split"] == "test"]
    thresholds = {"module default": SUPPORT_THRESHOLD}
    if args.calibrate:
        thresholds["calibrated on tune"] = calibrate(tune)
    print("\n| threshold | split | questions | gold in top 5 | answer has what was asked | never-happened abstained |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, t in thresholds.items():
        for name, part in (("tune", tune), ("test", test), ("all", results)):
            s = scores(part, t)
            print(
                f"| {label} {t:.2f} | {name} | {s['n']} + {s['never_n']} never | {s['top5']:.2f} | "
                f"{s['answer_ok']:.2f} | {s['never_abstained']:.2f} |"
            )
    t = thresholds.get("calibrated on tune", SUPPORT_THRESHOLD)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], []).append(r)
    print(f"\nper kind at {t:.2f} (all splits):")
    for kind, part in by_kind.items():
        s = scores(part, t)
        value = s["never_abstained"] if kind == "never" else s["answer_ok"]
        print(f"  {kind}: {len(part)} questions, {'abstained' if kind == 'never' else 'answer ok'} {value:.2f}")
    ms = sorted(r["ms"] for r in results)
    print(f"retrieve+answer per question: median {ms[len(ms) // 2]:.0f} ms")
    if args.show_misses:
        for r in results:
            ok = (r["support"] < t) if r["kind"] == "never" else all(e in r["text"] for e in r["expect"])
            if not ok or (r["kind"] != "never" and r["support"] < t):
                print(f"\nMISS {r['id']} ({r['split']}, support {r['support']:.2f}) {r['question']}")
                print(f"  gold {r['gold'][:1]} expect {r['expect']} top5 {[s[:9] for s in r['top5']]}")
                print("  " + r["text"].replace("\n", "\n  ")[:900])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", help="JSONL dev set on a real repository (default: the synthetic test repository)")
    parser.add_argument("--verify", help="A clone of that repository: check gold SHAs and expected values first")
    parser.add_argument("--calibrate", action="store_true", help="Pick the support threshold on the tune split")
    parser.add_argument("--k", type=int, default=10, help="Hits the answer is built from")
    parser.add_argument("--show-misses", action="store_true")
    cli = parser.parse_args()
    if cli.devset:
        real_repo(cli)
    else:
        main()
