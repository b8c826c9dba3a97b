"""The feedback store: a SQLite database in WAL mode under the data dir holding asked questions, ratings and reviews.

A rating is acknowledged only after its transaction is committed with `synchronous=FULL`, so the WAL frame is
fsync'd before the caller answers 201: a crash (even `kill -9`) right after the answer keeps the row. The query
log uses `synchronous=NORMAL` on its own connection: a question is not an acknowledged write, and an fsync per
`/ask` would cost latency for nothing a user was promised.

The same transaction that stores a rating (or a review decision) adds a row to the `outbox`: what
`ml/feedback/forward.py` still has to attach to the query's MLflow trace as an assessment. A row leaves the pending
state only once MLflow holds the assessment, so an MLflow outage or a crash delays forwarding and never drops it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ml.errors import UserError

MAX_COMMENT_CHARS = 2000
MAX_CORRECTION_CHARS = 4000
MAX_CLIENT_CHARS = 200
RATINGS = ("up", "down")
Review = Literal["pending", "approved", "rejected"]
_QUERY_ID = re.compile(r"^[0-9a-f]{32}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    confidence REAL NOT NULL,
    answerer TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    total_ms REAL NOT NULL,
    trace_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS queries_created ON queries (created_at);
CREATE TABLE IF NOT EXISTS feedback (
    query_id TEXT PRIMARY KEY REFERENCES queries (id),
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT NOT NULL DEFAULT '',
    correction TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    review TEXT NOT NULL DEFAULT 'none' CHECK (review IN ('none', 'pending', 'approved', 'rejected')),
    reviewed_answer TEXT NOT NULL DEFAULT '',
    reviewed_at REAL
);
CREATE INDEX IF NOT EXISTS feedback_review ON feedback (review);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('rating', 'review')),
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'no_trace', 'superseded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    claimed_until REAL NOT NULL DEFAULT 0,
    sent_at REAL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, next_at);
CREATE INDEX IF NOT EXISTS outbox_query ON outbox (query_id, id);
"""


class FeedbackError(UserError):
    """Feedback the store refuses; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Feedback:
    """One rating of one answer, as a person gave it."""

    query_id: str
    rating: str
    comment: str = ""
    correction: str = ""
    client: str = ""


def new_query_id() -> str:
    """A fresh query id: 32 lowercase hex digits (the shape of an MLflow trace id's random part)."""
    return uuid.uuid4().hex


def validate_feedback(
    query_id: Any, rating: Any, comment: Any = "", correction: Any = "", client: Any = ""
) -> Feedback:
    """A `Feedback`, or FeedbackError (400) naming the one field to fix."""
    if not isinstance(query_id, str) or not _QUERY_ID.match(query_id):
        raise FeedbackError("query_id must be the 32-character id returned by /ask.")
    if rating not in RATINGS:
        raise FeedbackError("rating must be 'up' or 'down'.")
    comment = "" if comment is None else comment
    correction = "" if correction is None else correction
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise FeedbackError(f"comment must be text of at most {MAX_COMMENT_CHARS} characters.", 413)
    if not isinstance(correction, str) or len(correction) > MAX_CORRECTION_CHARS:
        raise FeedbackError(f"correction must be text of at most {MAX_CORRECTION_CHARS} characters.", 413)
    if "\x00" in comment or "\x00" in correction:
        raise FeedbackError("comment and correction must not contain NUL characters.")
    return Feedback(query_id, rating, comment.strip(), correction.strip(), str(client or "")[:MAX_CLIENT_CHARS])


class FeedbackStore:
    """Queries, ratings and reviews in one SQLite file; safe to share between threads and worker processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._durable = self._connect("FULL")
        with self._durable:
            self._durable.executescript(SCHEMA)
        self._log = self._connect("NORMAL")

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.row_factory = sqlite3.Row
        return conn

    def close(self) -> None:
        with self._lock:
            self._log.close()
            self._durable.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the query log ---------------------------------------------------------------------------------------------

    def log_query(
        self, query_id: str, question: str, answer: dict[str, Any], model_version: str = "", trace_id: str = ""
    ) -> None:
        """Record one answered question under `query_id` (what a rating will refer to)."""
        row = (
            query_id,
            time.time(),
            question,
            json.dumps(answer, ensure_ascii=False),
            int(bool(answer.get("abstained"))),
            float(answer.get("confidence", 0.0)),
            str(answer.get("answerer", "")),
            model_version,
            float(answer.get("timings_ms", {}).get("total_ms", 0.0)),
            trace_id,
        )
        with self._lock:
            self._log.execute("INSERT OR REPLACE INTO queries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def query(self, query_id: str) -> dict[str, Any] | None:
        """The logged question and answer, or None."""
        with self._lock:
            row = self._durable.execute("SELECT * FROM queries WHERE id = ?", (query_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["answer"] = json.loads(out["answer"])
        return out

    # -- feedback --------------------------------------------------------------------------------------------------

    def record(self, fb: Feedback) -> dict[str, Any]:
        """Store a rating durably (fsync'd before returning); a second rating of the same answer replaces the first.

        A rating with a correction waits in the review queue; one without leaves nothing to review.

        Raises:
            FeedbackError: 404 when no answer has that query id.
        """
        now = time.time()
        review = "pending" if fb.correction else "none"
        with self._lock:
            conn = self._durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM queries WHERE id = ?", (fb.query_id,)).fetchone() is None:
                    raise FeedbackError(f"No answer has query_id {fb.query_id}; rate an answer returned by /ask.", 404)
                conn.execute(
                    """INSERT INTO feedback (query_id, rating, comment, correction, client, created_at, updated_at,
                                             review)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (query_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment,
                           correction = excluded.correction, client = excluded.client,
                           updated_at = excluded.updated_at, review = excluded.review, reviewed_answer = '',
                           reviewed_at = NULL""",
                    (fb.query_id, fb.rating, fb.comment, fb.correction, fb.client, now, now, review),
                )
                payload = {"rating": fb.rating, "comment": fb.comment, "correction": fb.correction}
                self._enqueue(conn, fb.query_id, "rating", {**payload, "client": fb.client}, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return {"query_id": fb.query_id, "rating": fb.rating, "review": review, "recorded_at": now}

    def feedback(self, query_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._durable.execute("SELECT * FROM feedback WHERE query_id = ?", (query_id,)).fetchone()
        return dict(row) if row else None

    # -- review ----------------------------------------------------------------------------------------------------

    def review_queue(self, status: Review = "pending", limit: int = 100) -> list[dict[str, Any]]:
        """Corrections in `status`, oldest first, each with the question and the answer it corrects."""
        with self._lock:
            rows = self._durable.execute(
                """SELECT f.*, q.question, q.answer FROM feedback f JOIN queries q ON q.id = f.query_id
                   WHERE f.review = ? ORDER BY f.updated_at LIMIT ?""",
                (status, limit),
            ).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            item["answer"] = json.loads(item["answer"])
            out.append(item)
        return out

    def decide(
        self,
        query_id: str,
        decision: Literal["approved", "rejected"],
        answer: str | None = None,
        reviewer: str = "reviewer",
    ) -> None:
        """Approve (optionally with an edited answer) or reject a correction waiting for review.

        Raises:
            UserError: no correction with that id is in the queue, or the edited answer is empty.
        """
        if answer is not None and not answer.strip():
            raise UserError("The edited answer is empty; give the corrected answer text.")
        with self._lock:
            conn = self._durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT correction FROM feedback WHERE query_id = ? AND review = 'pending'", (query_id,)
                ).fetchone()
                if row is None:
                    raise UserError(f"No correction for {query_id} waits for review; see `tqa feedback review`.")
                final = (answer if answer is not None else row["correction"]).strip()
                now = time.time()
                kept = final if decision == "approved" else ""
                conn.execute(
                    "UPDATE feedback SET review = ?, reviewed_answer = ?, reviewed_at = ? WHERE query_id = ?",
                    (decision, kept, now, query_id),
                )
                self._enqueue(
                    conn, query_id, "review", {"decision": decision, "answer": kept, "reviewer": reviewer}, now
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- the outbox to MLflow ----------------------------------------------------------------------------------------

    @staticmethod
    def _enqueue(conn: sqlite3.Connection, query_id: str, kind: str, payload: dict[str, Any], now: float) -> None:
        conn.execute(
            "INSERT INTO outbox (query_id, kind, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?)",
            (query_id, kind, json.dumps(payload, ensure_ascii=False), now, now),
        )

    def claim(self, limit: int = 50, lease_s: float = 120.0, now: float | None = None) -> list[dict[str, Any]]:
        """Pending outbox rows that are due, oldest first, leased to this caller for `lease_s` seconds.

        Only the oldest pending row of each query is handed out, so a second rating is forwarded after the first
        (it replaces it in MLflow too); a lease keeps two forwarders (two service workers) off the same row. A row
        followed by a newer rating of the same answer is settled as `superseded` unsent: the newer rating replaces
        it (and the review of it) anyway, so a backlog after an outage costs one forward per answer, not per post.
        """
        now = time.time() if now is None else now
        with self._lock:
            conn = self._durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    """UPDATE outbox SET state = 'superseded', sent_at = ?
                       WHERE state = 'pending' AND claimed_until <= ?
                         AND EXISTS (SELECT 1 FROM outbox n WHERE n.query_id = outbox.query_id
                                     AND n.kind = 'rating' AND n.id > outbox.id)""",
                    (now, now),
                )
                rows = conn.execute(
                    """SELECT o.*, q.trace_id, q.created_at AS asked_at FROM outbox o
                       LEFT JOIN queries q ON q.id = o.query_id
                       WHERE o.state = 'pending' AND o.next_at <= ? AND o.claimed_until <= ?
                         AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.query_id = o.query_id
                                         AND p.state = 'pending' AND p.id < o.id)
                       ORDER BY o.id LIMIT ?""",
                    (now, now, limit),
                ).fetchall()
                conn.executemany(
                    "UPDATE outbox SET claimed_until = ? WHERE id = ?", [(now + lease_s, r["id"]) for r in rows]
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        out = []
        for row in rows:
            item = dict(row)
            item["payload"] = json.loads(item["payload"])
            item["trace_id"] = item["trace_id"] or ""
            out.append(item)
        return out

    def settle(self, outbox_id: int, state: Literal["sent", "no_trace"], note: str = "") -> None:
        """Mark an outbox row done: its assessments are in MLflow, or its answer has no trace to attach them to."""
        with self._lock:
            self._durable.execute(
                "UPDATE outbox SET state = ?, sent_at = ?, claimed_until = 0, last_error = ? WHERE id = ?",
                (state, time.time(), note, outbox_id),
            )

    def retry_later(self, outbox_id: int, error: str, max_delay_s: float = 300.0) -> float:
        """Keep a row pending after a failed attempt; the next try waits 2^attempts seconds (capped). Returns it."""
        with self._lock:
            conn = self._durable
            (attempts,) = conn.execute("SELECT attempts FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
            delay = min(max_delay_s, float(2 ** min(attempts, 20)))
            conn.execute(
                """UPDATE outbox SET attempts = attempts + 1, next_at = ?, claimed_until = 0, last_error = ?
                   WHERE id = ?""",
                (time.time() + delay, error[:500], outbox_id),
            )
        return delay

    def expedite(self, now: float | None = None) -> int:
        """Make every pending row that waits out a retry delay due now (none another forwarder holds); returns how
        many. An explicit export tries them at once: a review made a moment ago may sit behind a rating whose trace
        had not reached MLflow on its first tries."""
        now = time.time() if now is None else now
        with self._lock:
            cursor = self._durable.execute(
                "UPDATE outbox SET next_at = ? WHERE state = 'pending' AND next_at > ? AND claimed_until <= ?",
                (now, now, now),
            )
        return int(cursor.rowcount)

    def next_due(self) -> float | None:
        """The earliest time a pending row is due (epoch seconds), or None when nothing is pending."""
        with self._lock:
            (at,) = self._durable.execute(
                "SELECT MIN(MAX(next_at, claimed_until)) FROM outbox WHERE state = 'pending'"
            ).fetchone()
        return float(at) if at is not None else None

    def in_flight(self, now: float | None = None) -> int:
        """Due pending rows another forwarder holds a lease on (it is sending them right now)."""
        now = time.time() if now is None else now
        with self._lock:
            (n,) = self._durable.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND next_at <= ? AND claimed_until > ?", (now, now)
            ).fetchone()
        return int(n)

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by state (pending, sent, no_trace, superseded)."""
        with self._lock:
            rows = self._durable.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        return {"pending": 0, "sent": 0, "no_trace": 0, "superseded": 0, **dict(rows)}

    def outbox_rows(self, query_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._durable.execute("SELECT * FROM outbox WHERE query_id = ? ORDER BY id", (query_id,)).fetchall()
        return [dict(r) for r in rows]

    # -- numbers for dashboards ------------------------------------------------------------------------------------

    def stats(self, since: float = 0.0) -> dict[str, Any]:
        """Online use since `since` (epoch seconds): questions, abstention rate, latency percentiles, thumbs."""
        with self._lock:
            conn = self._durable
            totals = [
                r["total_ms"]
                for r in conn.execute("SELECT total_ms FROM queries WHERE created_at >= ? ORDER BY total_ms", (since,))
            ]
            abstained = conn.execute(
                "SELECT COALESCE(SUM(abstained), 0) FROM queries WHERE created_at >= ?", (since,)
            ).fetchone()[0]
            ratings = dict(
                conn.execute(
                    "SELECT rating, COUNT(*) FROM feedback WHERE updated_at >= ? GROUP BY rating", (since,)
                ).fetchall()
            )
            reviews = dict(conn.execute("SELECT review, COUNT(*) FROM feedback GROUP BY review").fetchall())

        def pct(p: float) -> float:
            return totals[min(len(totals) - 1, int(p * len(totals)))] if totals else 0.0

        n = len(totals)
        return {
            "questions": n,
            "abstention_rate": abstained / n if n else 0.0,
            "p50_ms": pct(0.5),
            "p95_ms": pct(0.95),
            "up": ratings.get("up", 0),
            "down": ratings.get("down", 0),
            "pending_review": reviews.get("pending", 0),
            "approved": reviews.get("approved", 0),
            "rejected": reviews.get("rejected", 0),
        }

    def worst_rated(self, limit: int = 20) -> list[dict[str, Any]]:
        """Questions rated down, newest first."""
        with self._lock:
            rows = self._durable.execute(
                """SELECT q.id, q.question, q.answerer, f.comment, f.updated_at FROM feedback f
                   JOIN queries q ON q.id = f.query_id WHERE f.rating = 'down' ORDER BY f.updated_at DESC LIMIT ?""",
                (limit,),
            ).fetchall()
        return [dict(r) for r in rows]
