"""Concurrent query embeddings are coalesced into batches, each caller gets its own vector, errors reach everyone."""

from __future__ import annotations

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

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if self.fail:
            raise RuntimeError("model crashed")
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)


def test_concurrent_queries_share_forward_passes_and_get_their_own_vectors() -> None:
    # A batch closes when it is full or when its wait runs out. The wait (30 s) is far longer than eight submissions
    # take, so the batch closes when the eighth query joins it, however the threads are scheduled.
    embedder = CountingEmbedder()
    batcher = QueryBatcher(embedder, max_batch=8, max_wait_ms=30_000)  # type: ignore[arg-type]
    texts = ["a" * n for n in range(1, 9)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher.embed_query, t) for t in texts]
        vectors = [f.result(timeout=60) for f in futures]
    batcher.close()
    assert embedder.calls == [8]  # one forward pass for all eight
    assert [float(v[0]) for v in vectors] == [float(len(t)) for t in texts]  # each caller its own vector


def test_a_failed_batch_raises_in_every_waiting_caller() -> None:
    embedder = CountingEmbedder(fail=True)
    batcher = QueryBatcher(embedder, max_batch=3, max_wait_ms=30_000)  # type: ignore[arg-type]
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.embed_query, t) for t in ("x", "yy", "zzz")]
        for future in futures:
            with pytest.raises(RuntimeError, match="model crashed"):
                future.result(timeout=60)
    batcher.close()
    assert embedder.calls == [3]
