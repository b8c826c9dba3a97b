"""What the dashboard shows, as plain functions the tests call: dataset, evaluation history, online use."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ml.settings import Settings


def dataset_summary(directory: Path) -> dict[str, Any] | None:
    """Pairs by category, split and source kind, answer/question lengths and the rows; None when never built."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    rows = []
    for name in ("train.jsonl", "eval.jsonl"):
        path = directory / name
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        "hash": manifest.get("dataset_hash", ""),
        "built_at": manifest.get("built_at", ""),
        "records": len(rows),
        "by_category": dict(Counter(r["category"] for r in rows).most_common()),
        "by_split": dict(Counter(r["split"] for r in rows).most_common()),
        "by_source_kind": dict(Counter(r["source"]["kind"] for r in rows).most_common()),
        "question_words": [len(r["question"].split()) for r in rows],
        "answer_words": [len(r["answer"].split()) for r in rows],
        "rows": [
            {
                "id": r["id"],
                "split": r["split"],
                "category": r["category"],
                "question": r["question"],
                "answer": r["answer"],
                "source": r["source"].get("url") or r["source"].get("path", ""),
            }
            for r in rows
        ],
    }


def eval_history(settings: Settings, max_runs: int = 200) -> list[dict[str, Any]]:
    """Finished evaluation runs, oldest first, each with its metrics; raises UserError when MLflow is not there."""
    from ml.tracking.log import connect

    mlflow = connect(settings)
    runs = mlflow.search_runs(
        experiment_names=[settings.mlflow_experiment], max_results=max_runs, output_format="list",
        order_by=["attributes.start_time ASC"],
    )  # fmt: skip
    return [
        {"run_id": r.info.run_id, "start_time": r.info.start_time, "name": r.info.run_name, **r.data.metrics}
        for r in runs
    ]


def online_use(settings: Settings, since: float = 0.0) -> dict[str, Any]:
    """Questions, abstention rate, latency percentiles and thumbs from the query log, with the worst-rated ones."""
    from ml.feedback.store import FeedbackStore

    with FeedbackStore(settings.feedback_db) as store:
        return {**store.stats(since), "worst": store.worst_rated()}
