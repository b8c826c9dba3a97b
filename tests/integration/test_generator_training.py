"""`tqa train generator --tiny` on the tiny Qwen2: loss falls, the run and adapter land in a real MLflow server, the
gate registers the adapter, and the real runner (`bentoml serve`) loads it from the registry and answers differently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml.errors import UserError
from ml.settings import Settings
from ml.tracking.generator import register_adapter
from ml.tracking.server import MlflowServer
from tests.support.generator import tiny_dataset
from tests.support.ports import free_port
from tests.support.qwen_runner import start_runner, stop_runner
from tests.support.tiny_qwen import build_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ml" / "train" / "configs" / "tiny-cpu.yaml"
MODEL = "tqa-generator"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow"), port=free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def tqa(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **env},
    )


@pytest.fixture(scope="module")
def trained(mlflow_server: MlflowServer, tiny_model: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("tqa")
    env = {"TQA_DATA_DIR": str(data_dir), "TQA_MLFLOW_TRACKING_URI": mlflow_server.uri}
    shown = tqa(
        "train", "generator", "--config", str(CONFIG), "--tiny", "--base-model", str(tiny_model),
        "--dataset", str(dataset), env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return shown, data_dir


def _client(server: MlflowServer):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(server.uri)


def test_loss_falls_and_the_run_is_reproducible_from_mlflow(trained, mlflow_server: MlflowServer, dataset: Path):
    client = _client(mlflow_server)
    version = client.get_model_version_by_alias(MODEL, "staging")
    run = client.get_run(version.run_id)
    curve = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert len(curve) == 12
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve
    assert run.data.metrics["eval_loss"] < run.data.metrics["eval_loss_base"]
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert run.data.tags["tqa.dataset_hash"] == manifest["dataset_hash"]
    assert len(run.data.tags["tqa.code_sha"].split("+")[0]) == 40
    assert run.data.tags["tqa.seed"] == "13"
    assert run.data.params["lora.r"] == "8" and run.data.params["max_steps"] == "12"
    assert client.get_model_version(MODEL, version.version).tags["gate"] == "accepted"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= artifacts


def test_runner_loads_the_registered_adapter_and_answers_change(
    trained, mlflow_server: MlflowServer, tiny_model: Path, dataset: Path, tmp_path: Path
):
    from ml.train.generator_data import load_splits, rag_examples

    _, _, eval_pairs = load_splits(dataset)
    messages = rag_examples(eval_pairs[:1], sources=2, refusal_share=0.0)[0].messages
    body = {"messages": messages, "max_tokens": 12, "temperature": 0.0, "ignore_eos": True}
    common = {"TQA_RUNNER_TORCH_THREADS": "1", "TQA_RUNNER_MAX_INPUT_TOKENS": "4096"}
    answers = {}
    for name, extra in {
        "base": {},
        "adapted": {
            "TQA_RUNNER_ADAPTER": f"models:/{MODEL}@staging",
            "TQA_RUNNER_MLFLOW_TRACKING_URI": mlflow_server.uri,
        },
    }.items():
        home = tmp_path / name
        home.mkdir()
        proc, url = start_runner(tiny_model, home, {**common, **extra})
        try:
            resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
            assert resp.status_code == 200, resp.text
            answers[name] = resp.json()["choices"][0]["message"]["content"]
        finally:
            stop_runner(proc)
    assert answers["adapted"] != answers["base"], answers


def test_a_corrupt_adapter_registers_nothing(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    import mlflow

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    mlflow.set_tracking_uri(mlflow_server.uri)
    mlflow.set_experiment("tqa-generator")
    with mlflow.start_run() as run:
        mlflow.log_metric("eval_loss_reduction", 0.5)
        mlflow.log_artifacts(str(adapter), artifact_path="adapter")
    settings = Settings(mlflow_tracking_uri=mlflow_server.uri)
    with pytest.raises(UserError, match="corrupt"):
        register_adapter(settings, run.info.run_id, "tqa-corrupt")
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        _client(mlflow_server).get_registered_model("tqa-corrupt")


@pytest.mark.gpu
def test_the_tiny_run_trains_on_a_gpu_and_reports_its_memory(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    from ml.train.generator import load_config, train_generator

    config = load_config(CONFIG).model_copy(update={"device": "cuda", "dtype": "bfloat16", "max_steps": 12})
    result = train_generator(Settings(), config, dataset, tmp_path / "out", base_model=str(tiny_model), track=False)
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    assert result.peak_memory_gb is not None and result.peak_memory_gb > 0
    assert result.tokens_per_s > 0
