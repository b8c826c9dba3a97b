"""The BentoML RAG service: POST /ask and /search over the index, with health, readiness and metrics."""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Any

import bentoml
from pydantic import Field

from ml.pipeline import MAX_K, QA, InvalidQuestion
from ml.settings import Settings
from ml.types import SearchResult

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


class RequestTooLarge(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BadRequest(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.BAD_REQUEST


ASK_LATENCY = bentoml.metrics.Histogram(
    name="tqa_ask_seconds",
    documentation="Time to answer a question, seconds.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ABSTENTIONS = bentoml.metrics.Counter(name="tqa_abstentions", documentation="Questions answered with an abstention.")


def _check(exc: InvalidQuestion) -> bentoml.exceptions.BentoMLException:
    return RequestTooLarge(str(exc)) if exc.status == 413 else BadRequest(str(exc))


@bentoml.service(name="tqa-rag", traffic={"timeout": 30, "concurrency": 32}, workers=2)
class RAGService:
    """Answers questions about the Transformers repository with numbered, pinned citations."""

    def __init__(self) -> None:
        import torch

        # Concurrent questions are embedded in one batch; a second intra-op thread per forward pass only
        # competes with Weaviate and the other requests for the same cores.
        torch.set_num_threads(1)
        self.settings = Settings()
        self.qa = QA(self.settings, batch_queries=True)
        self.qa.warm_up()

    def __is_ready__(self) -> bool:
        return self.qa.index.client.is_ready()

    # `k` is range-checked by the pipeline, not by pydantic here: BentoML turns a pydantic error into a 400 whose
    # message is a validation dump, and the API promises one sentence ("k must be between 1 and 50.").
    @bentoml.api(route="/ask")
    def ask(
        self, question: str = Field(default=""), k: int = Field(default=5, description=f"Sources, 1 to {MAX_K}.")
    ) -> dict[str, Any]:
        """Answer a question; the JSON carries answer, confidence, abstained, sources and timings_ms."""
        import time

        started = time.perf_counter()
        try:
            answer = self.qa.ask(question, k=k)
        except InvalidQuestion as exc:
            raise _check(exc) from exc
        ASK_LATENCY.observe(time.perf_counter() - started)
        if answer.abstained:
            ABSTENTIONS.inc()
        return answer.model_dump()

    @bentoml.api(route="/search")
    def search(
        self,
        query: str = Field(default=""),
        k: int = Field(default=10, description=f"Results, 1 to {MAX_K}."),
        kind: list[str] | None = None,
        path_prefix: str | None = None,
    ) -> dict[str, Any]:
        """Ranked chunks for a query, best first, with optional kind and path-prefix filters."""
        try:
            hits = self.qa.search(query, k=k, kinds=kind, path_prefix=path_prefix)
        except InvalidQuestion as exc:
            raise _check(exc) from exc
        return {"results": [SearchResult.of(h).model_dump() for h in hits]}
