"""Locust users with the persona mix of the question sets: novices ask more often, researchers read longer.

Questions come from ml/eval/data (the dev set by persona, plus out-of-scope and injection questions for the
adversarial user). A user keeps its cookies, so the release proxy keeps it on one side for its session.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from locust import HttpUser, between, task

DATA = Path(__file__).resolve().parents[2] / "ml" / "eval" / "data"


def _questions(name: str, persona: str | None = None) -> list[str]:
    rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows if persona is None or r.get("persona") == persona]


class _Asker(HttpUser):
    abstract = True
    questions: list[str] = []
    k = 5

    @task
    def ask(self) -> None:
        question = random.choice(self.questions)
        with self.client.post("/ask", json={"question": question, "k": self.k}, name="/ask", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
            elif "answer" not in r.json():
                r.failure("no answer in the response")


class Novice(_Asker):
    weight = 4
    wait_time = between(1, 4)
    questions = _questions("dev_questions.jsonl", "novice")


class Experienced(_Asker):
    weight = 3
    wait_time = between(2, 6)
    questions = _questions("dev_questions.jsonl", "experienced")


class Researcher(_Asker):
    weight = 1
    wait_time = between(5, 15)
    k = 10
    questions = _questions("dev_questions.jsonl", "researcher")


class Contributor(_Asker):
    weight = 2
    wait_time = between(2, 8)
    questions = _questions("dev_questions.jsonl", "contributor")


class Adversarial(_Asker):
    weight = 1
    wait_time = between(1, 5)
    questions = _questions("out_of_scope.jsonl") + _questions("injection.jsonl")
