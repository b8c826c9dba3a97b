"""Concurrent query embeddings are coalesced into batches, each caller gets its own vector, errors reach everyone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ml.index.embed import QueryBatcher


class CountingEmbedder:
    """Stands in for the model: the vector of a text is its length, and each call is recorded."""

    model_name = "counting"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.gate = threading.Event()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.gate.wait(5)
        self.calls.append(len(texts))
        if self.fail:
            raise RuntimeError("model crashed")
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)


def test_concurrent_queries_share_forward_passes_and_get_their_own_vectors() -> None:
    embedder = CountingEmbedder()
    batcher = QueryBatcher(embedder, max_batch=16, max_wait_ms=50)  # type: ignore[arg-type]
    texts = ["a" * n for n in range(1, 9)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher.embed_query, t) for t in texts]
        embedder.gate.set()
        vectors = [f.result(timeout=10) for f in futures]
    batcher.close()
    assert [float(v[0]) for v in vectors] == [float(len(t)) for t in texts]
    assert sum(embedder.calls) == 8
    assert len(embedder.calls) < 8


def test_a_failed_batch_raises_in_every_waiting_caller() -> None:
    embedder = CountingEmbedder(fail=True)
    embedder.gate.set()
    batcher = QueryBatcher(embedder)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="model crashed"):
        batcher.embed_query("x")
    batcher.close()
