"""kill -9 `tqa serve` under load and start it again on its port; clients retry (serving.client.post) through it.

Shared by tests/integration/test_serve_faults.py and bench/serve_restart.py. Each client asks a question, rates
the answer with a comment of its own, and repeats; a rating acknowledged (201) before, during or after the crash
must be in the feedback store, and every /ask answer acknowledged must be rateable after the restart (its query
log row survived).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ml.feedback.store import FeedbackStore
from ml.settings import Settings
from serving.client import post
from tests.support.serve import start_service

QUESTIONS = [
    "How is RMS normalization implemented in Llama?",
    "How do I load a model in 4-bit?",
    "What does the repetition penalty logits processor do?",
    "How do I stop generation after a maximum time?",
]


@dataclass
class RestartReport:
    asks_acked: int = 0
    ratings_acked: int = 0
    ratings_found: int = 0
    gave_up: int = 0
    down_s: float = 0.0
    acked_across_restart: int = 0  # in flight at the kill or sent while the server was away, then retried
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.ratings_acked - self.ratings_found


def run_restart_scenario(
    settings: Settings,
    log_dir: Path,
    clients: int = 8,
    before_s: float = 5.0,
    after_s: float = 5.0,
    retry_s: float = 180.0,
) -> RestartReport:
    """`clients` threads ask and rate through `tqa serve`; it is SIGKILLed after `before_s` and started again on the
    same port; the load goes on `after_s` past its readiness. Every acknowledged rating is then looked up."""
    report = RestartReport()
    lock = threading.Lock()
    stop = threading.Event()
    restarting = threading.Event()
    kills = [0]
    acked: dict[str, str] = {}  # query_id -> the comment of its acknowledged rating (one rating per answer)
    served = start_service(settings, log_dir)
    port = int(served.url.rsplit(":", 1)[1])

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            comment = f"client {n} post {i}"
            kills_before, away = kills[0], restarting.is_set()
            try:
                answer = post(served.url, "/ask", {"question": QUESTIONS[(n + i) % len(QUESTIONS)]}, retry_s=retry_s)
                with lock:
                    report.asks_acked += 1
                body = {"query_id": answer["query_id"], "rating": "up" if i % 2 else "down", "comment": comment}
                post(served.url, "/feedback", body, retry_s=retry_s)
            except Exception as exc:  # a client that gave up: counted, and the run fails on it
                with lock:
                    report.gave_up += 1
                    report.errors.append(f"client {n}: {exc!r}"[:300])
                continue
            with lock:
                acked[answer["query_id"]] = comment
                report.acked_across_restart += away or kills[0] != kills_before

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(before_s)
        restarting.set()
        killed = time.monotonic()
        served.kill9()
        kills[0] += 1
        served = start_service(settings, log_dir, port=port)
        report.down_s = time.monotonic() - killed
        restarting.clear()
        time.sleep(after_s)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=retry_s + 60)
        served.stop()
    report.ratings_acked = len(acked)
    with FeedbackStore(settings.feedback_db) as store:
        for query_id, comment in acked.items():
            row = store.feedback(query_id)
            if row is not None and row["comment"] == comment:
                report.ratings_found += 1
            else:
                report.errors.append(f"acknowledged rating of {query_id} ({comment!r}) not stored: {row}"[:300])
    return report
