"""Review queue to dataset pairs: `tqa feedback review/approve/reject/export` over a real store in a temp data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ml.dataset.types import QAPair
from ml.feedback.export import correction_pairs
from ml.feedback.store import FeedbackStore, new_query_id, validate_feedback
from ml.index.staging import feedback_buffer, staged_pairs
from tests.support.ports import free_port

ANSWER = {
    "answer": "Adafactor._rms [1]",
    "confidence": 0.6,
    "abstained": False,
    "answerer": "extractive",
    "sources": [{"n": 1, "kind": "method", "path": "transformers/optimization.py", "start_line": 10,
                 "end_line": 12, "symbol": "Adafactor._rms", "url": "https://github.com/x/y/blob/abc/o.py#L10-L12",
                 "commit": "abc"}],
    "excerpts": {"1": "def _rms(tensor):\n    return tensor.norm(2)"},
    "cited_chunks": {"1": "0b3c6a52-chunk"},
    "timings_ms": {"total_ms": 12.0},
}  # fmt: skip


def tqa(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")} | extra
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "feedback", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "TQA_DATA_DIR": str(data_dir), "COLUMNS": "200"},
    )


def seeded(data_dir: Path) -> tuple[str, str, str]:
    ids = new_query_id(), new_query_id(), new_query_id()
    with FeedbackStore(data_dir / "feedback.sqlite") as store:
        for n, qid in enumerate(ids):
            store.log_query(qid, f"How is RMS computed in Adafactor? ({n})", ANSWER)
            store.record(validate_feedback(qid, "down", comment="too short", correction=f"It divides by sqrt(n). {n}"))
    return ids


def test_review_approve_edit_reject_and_export(tmp_path: Path) -> None:
    a, b, c = seeded(tmp_path)
    listed = tqa(tmp_path, "review")
    assert listed.returncode == 0, listed.stderr
    assert all(qid in listed.stdout for qid in (a, b, c))
    assert "It divides by sqrt(n). 0" in listed.stdout

    assert tqa(tmp_path, "approve", a).returncode == 0
    assert tqa(tmp_path, "approve", b, "--answer", "Edited: the root mean square of the tensor.").returncode == 0
    assert tqa(tmp_path, "reject", c).returncode == 0
    again = tqa(tmp_path, "approve", c)
    assert again.returncode == 2 and "waits for review" in again.stderr and "Traceback" not in again.stderr

    nobody = f"http://127.0.0.1:{free_port()}"  # no MLflow listens there
    down = tqa(tmp_path, "export", env={"TQA_MLFLOW_TRACKING_URI": nobody})
    assert down.returncode == 2 and "did not answer" in down.stderr and "Traceback" not in down.stderr
    exported = tqa(tmp_path, "export", "--local", "--path", str(tmp_path / "feedback" / "pairs.jsonl"))
    assert exported.returncode == 0, exported.stderr
    staged = staged_pairs(feedback_buffer(tmp_path / "staging" / "changes.jsonl"))
    assert set(staged) == {a, b}
    lines = (tmp_path / "feedback" / "pairs.jsonl").read_text().splitlines()
    pairs = {p.id: p for p in (QAPair.model_validate(json.loads(line)) for line in lines)}
    assert set(pairs) == {f"feedback-{a}", f"feedback-{b}"}, "a rejected correction is never exported"
    pair = pairs[f"feedback-{b}"]
    assert pair.answer == "Edited: the root mean square of the tensor."
    assert pair.category == "user_correction" and pair.generator == "human-review"
    assert pair.source.kind == "feedback" and pair.source.chunk_id == "0b3c6a52-chunk"
    assert pair.source.path == "transformers/optimization.py" and pair.source.commit == "abc"
    assert "def _rms" in pair.context


def test_stats_and_json_queue(tmp_path: Path) -> None:
    seeded(tmp_path)
    stats = json.loads(tqa(tmp_path, "stats").stdout)
    assert stats["questions"] == 3 and stats["down"] == 3 and stats["pending_review"] == 3
    queue = [json.loads(line) for line in tqa(tmp_path, "review", "--json").stdout.splitlines()]
    assert len(queue) == 3 and all(item["review"] == "pending" for item in queue)
    bad = tqa(tmp_path, "review", "--status", "maybe")
    assert bad.returncode == 2 and "--status must be" in bad.stderr


def test_only_approved_corrections_become_pairs(tmp_path: Path) -> None:
    seeded(tmp_path)
    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        assert correction_pairs(store) == []
