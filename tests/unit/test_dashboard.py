"""The Streamlit dashboard through Streamlit's AppTest: online use from the store, approving from the review queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml.feedback.store import FeedbackStore, new_query_id, validate_feedback
from ml.settings import Settings
from ops.dashboard.data import dataset_summary, online_use

APP = Path(__file__).resolve().parents[2] / "ops" / "dashboard" / "app.py"
ANSWER = {"answer": "x [1]", "confidence": 0.5, "abstained": False, "answerer": "extractive", "sources": [],
          "timings_ms": {"total_ms": 80.0}}  # fmt: skip


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TQA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TQA_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens: the tab says so
    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        for i in range(4):
            qid = new_query_id()
            store.log_query(qid, f"<b>question {i}</b>", {**ANSWER, "abstained": i == 3})
            store.record(validate_feedback(qid, "down" if i < 2 else "up", correction="fix" if i == 0 else ""))
    return tmp_path


def test_online_use_counts_the_store(data_dir: Path) -> None:
    use = online_use(Settings())
    assert (use["questions"], use["up"], use["down"], use["pending_review"]) == (4, 2, 2, 1)
    assert use["abstention_rate"] == 0.25
    assert [w["question"] for w in use["worst"]] == ["<b>question 1</b>", "<b>question 0</b>"]


def test_dataset_summary_counts_a_build(tmp_path: Path) -> None:
    assert dataset_summary(tmp_path) is None
    (tmp_path / "manifest.json").write_text(json.dumps({"dataset_hash": "ab" * 32, "built_at": "now"}))
    pair = {"id": "p", "split": "train", "category": "code_purpose", "question": "What does f do?",
            "answer": "It adds.", "source": {"kind": "function", "path": "a.py", "url": ""}}  # fmt: skip
    (tmp_path / "train.jsonl").write_text(json.dumps(pair) + "\n")
    summary = dataset_summary(tmp_path)
    assert summary["records"] == 1 and summary["by_source_kind"] == {"function": 1}
    assert summary["question_words"] == [4]


def test_app_shows_use_and_approves_a_correction(data_dir: Path) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Questions"] == "4" and metrics["Thumbs down"] == "2"
    assert any("No MLflow server answers" in w.value for w in at.warning)
    assert any("question 0" in t.value for t in at.text), "the queued question is shown as text"
    at.text_area[0].set_value("The edited answer.")
    [approve] = [b for b in at.button if b.label == "Approve"]
    approve.click().run()
    assert not at.exception
    with FeedbackStore(data_dir / "feedback.sqlite") as store:
        [approved] = store.review_queue("approved")
    assert approved["reviewed_answer"] == "The edited answer."
