"""The feedback store: validation, linking to a logged answer, replacement, the review queue and its numbers."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ml.errors import UserError
from ml.feedback.store import (
    MAX_COMMENT_CHARS,
    FeedbackError,
    FeedbackStore,
    new_query_id,
    validate_feedback,
)

ANSWER = {"answer": "Use BitsAndBytesConfig [1].", "confidence": 0.8, "abstained": False, "answerer": "extractive",
          "sources": [{"n": 1, "path": "a.py"}], "timings_ms": {"total_ms": 42.0}}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    with FeedbackStore(tmp_path / "feedback.sqlite") as s:
        yield s


def test_database_is_in_wal_mode(store: FeedbackStore) -> None:
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.parametrize(
    ("fields", "message", "status"),
    [
        ({"query_id": "nope"}, "query_id must be", 400),
        ({"rating": "meh"}, "rating must be 'up' or 'down'", 400),
        ({"comment": "x" * (MAX_COMMENT_CHARS + 1)}, "comment must be text of at most", 413),
        ({"correction": 12}, "correction must be text", 413),
        ({"comment": "a\x00b"}, "NUL", 400),
    ],
)
def test_bad_feedback_is_one_sentence(fields: dict, message: str, status: int) -> None:
    args = {"query_id": new_query_id(), "rating": "up", **fields}
    with pytest.raises(FeedbackError, match=message) as info:
        validate_feedback(**args)
    assert info.value.status == status


def test_rating_an_unknown_answer_is_404_and_stores_nothing(store: FeedbackStore) -> None:
    with pytest.raises(FeedbackError, match="No answer has query_id") as info:
        store.record(validate_feedback(new_query_id(), "down", correction="x"))
    assert info.value.status == 404
    assert store.review_queue() == []


def test_second_rating_replaces_the_first_and_corrections_wait_for_review(store: FeedbackStore) -> None:
    qid = new_query_id()
    store.log_query(qid, "How do I load in 4-bit?", ANSWER)
    assert store.record(validate_feedback(qid, "up"))["review"] == "none"
    store.record(validate_feedback(qid, "down", comment="wrong class", correction="Use load_in_4bit=True."))
    row = store.feedback(qid)
    assert (row["rating"], row["comment"], row["review"]) == ("down", "wrong class", "pending")
    [queued] = store.review_queue()
    assert queued["question"] == "How do I load in 4-bit?"
    assert queued["answer"]["answer"] == ANSWER["answer"]
    assert store.stats()["down"] == 1 and store.stats()["up"] == 0


def test_review_approves_with_an_edit_or_rejects(store: FeedbackStore) -> None:
    a, b = new_query_id(), new_query_id()
    for qid in (a, b):
        store.log_query(qid, f"question {qid}", ANSWER)
        store.record(validate_feedback(qid, "down", correction="The right answer."))
    store.decide(a, "approved", answer="An edited answer.")
    store.decide(b, "rejected")
    assert store.review_queue() == []
    [approved] = store.review_queue("approved")
    assert approved["reviewed_answer"] == "An edited answer."
    with pytest.raises(UserError, match="waits for review"):
        store.decide(a, "rejected")
    with pytest.raises(UserError, match="edited answer is empty"):
        store.decide(b, "approved", answer="  ")


def test_stats_count_questions_abstentions_and_latency(store: FeedbackStore) -> None:
    for i, ms in enumerate([10.0, 20.0, 30.0, 400.0]):
        store.log_query(new_query_id(), f"q{i}", {**ANSWER, "abstained": i == 0, "timings_ms": {"total_ms": ms}})
    stats = store.stats()
    assert stats["questions"] == 4
    assert stats["abstention_rate"] == 0.25
    assert stats["p95_ms"] == 400.0


def test_every_rating_and_review_is_queued_for_mlflow_in_the_same_transaction(store: FeedbackStore) -> None:
    a, b = new_query_id(), new_query_id()
    for qid in (a, b):
        store.log_query(qid, "How do I load in 4-bit?", ANSWER)
    store.record(validate_feedback(a, "down", "short", "Use load_in_4bit."))
    store.decide(a, "approved", reviewer="maintainer")
    store.record(validate_feedback(b, "up"))
    rows = store.outbox_rows(a)
    assert [(r["kind"], r["state"]) for r in rows] == [("rating", "pending"), ("review", "pending")]
    # One row per answer at a time, oldest first; a lease keeps a second forwarder off it.
    first = store.claim()
    assert [(r["query_id"], r["kind"]) for r in first] == [(a, "rating"), (b, "rating")]
    assert first[0]["payload"]["comment"] == "short" and first[0]["payload"]["correction"] == "Use load_in_4bit."
    assert store.claim() == []
    store.settle(first[0]["id"], "sent")
    assert store.retry_later(first[1]["id"], "ConnectionError: refused") == 1.0
    [review] = store.claim()  # the failed row waits out its backoff
    assert review["kind"] == "review" and review["payload"]["answer"] == "Use load_in_4bit."
    [retried] = store.claim(now=time.time() + 5)
    assert retried["id"] == first[1]["id"] and retried["attempts"] == 1 and "refused" in retried["last_error"]


def test_a_newer_rating_supersedes_what_was_not_sent_yet(store: FeedbackStore) -> None:
    qid = new_query_id()
    store.log_query(qid, "How do I load in 4-bit?", ANSWER)
    for i in range(3):
        store.record(validate_feedback(qid, "down", comment=f"post {i}"))
    [row] = store.claim()
    assert row["payload"]["comment"] == "post 2"
    assert store.outbox_counts() == {"pending": 1, "sent": 0, "no_trace": 0, "superseded": 2}


def test_expedite_makes_rows_in_a_retry_delay_due_now_but_not_rows_another_forwarder_holds(
    store: FeedbackStore,
) -> None:
    a, b = new_query_id(), new_query_id()
    for qid in (a, b):
        store.log_query(qid, "How do I load in 4-bit?", ANSWER)
        store.record(validate_feedback(qid, "down"))
    assert store.next_due() is not None and store.next_due() <= time.time()
    waiting, held = store.claim()
    assert store.retry_later(waiting["id"], "RESOURCE_DOES_NOT_EXIST") == 1.0
    assert store.retry_later(waiting["id"], "RESOURCE_DOES_NOT_EXIST") == 2.0  # held is leased to "another" forwarder
    assert store.claim() == [] and store.next_due() > time.time()
    assert store.expedite() == 1
    [row] = store.claim()
    assert row["id"] == waiting["id"] and row["attempts"] == 2
    assert store.expedite() == 0  # both are leased now
    store.settle(row["id"], "sent")
    store.settle(held["id"], "sent")
    assert store.next_due() is None
