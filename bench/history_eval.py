"""Dev-set Recall@5 of the right commit through the real retriever and a real embedded Weaviate, with the history steps
(code -> history links, intent boost, routing) switched on and off.

The test repository of `tests/support/history_repo.py` is synced into a fresh index (`tqa sync`'s path); each of its 25
why/when/which-PR questions names its gold commit by PR number. A question counts as found when a history chunk
(commit, diff, PR, issue) of a gold commit is among the top 5 hits.

    python bench/history_eval.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.retrieve import RetrievalConfig, Retriever  # noqa: E402
from ml.retrieve_history import commits_of  # noqa: E402
from tests.support import history_repo  # noqa: E402

ROUTE_OFF = 2.0  # an intent threshold no question reaches
VARIANTS: dict[str, dict[str, Any]] = {
    "hybrid only (history steps off)": dict(history=False),
    "+ intent boost": dict(history=True, history_links=False, history_route_threshold=ROUTE_OFF),
    "+ intent boost + routing": dict(history=True, history_links=False),
    "+ code->history links only": dict(history=True, history_boost=0.0, history_route_threshold=ROUTE_OFF),
    "+ links + intent boost": dict(history=True, history_route_threshold=ROUTE_OFF),
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


if __name__ == "__main__":
    main()
