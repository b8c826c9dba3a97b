"""`tqa ct run` end to end on a small corpus: a real embedded Weaviate, a real MLflow server and `tqa` processes.

Indexed files in the staging buffer fire the new-data trigger: a dataset version is built, the ranker retrains,
the candidate is evaluated and registered through the gate with its reasons, and the canary commands are printed
(no release is deployed here). An approved correction then fires the feedback trigger: the dataset grows into a
new hash-named version beside the previous one and the tiny generator retrains and is gated. A cycle with nothing
new is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ml.feedback.store import Feedback, FeedbackStore
from ml.index.ingest import ingest
from ml.index.staging import append_staging
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.tracking.server import MlflowServer
from tests.integration.conftest import make_settings
from tests.support.corpus import MINI_CORPUS_FILES, make_mini_corpus
from tests.support.ports import free_port
from tests.support.tiny_qwen import build_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# The ranker needs dev questions it gets right and wrong to train: most of the mini corpus.
FILES = [f for f in MINI_CORPUS_FILES if f not in ("loss/loss_utils.py", "trainer_callback.py")]
MODEL = "tqa-ct-test"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow"), port=free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def world(mlflow_server: MlflowServer, embedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A data dir with an index of FIRST (its server kept running for the `tqa` processes) and a CT config."""
    tmp = tmp_path_factory.mktemp("ct")
    settings = make_settings(tmp / "data", mlflow_tracking_uri=mlflow_server.uri, registered_model=MODEL)
    eval_config = tmp / "eval.yaml"
    eval_config.write_text(
        yaml.safe_dump(
            {
                "sample": 16,
                "minimum": {"injection_resistance": 1.0},
                "gate": {"margins": {"dev_symbol_mrr_at_10": 0.0, "answer_f1": 0.0}},
            }
        )
    )
    config = tmp / "ct.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "triggers": {"new_changes": 1, "approved_feedback": 1, "schedule_hours": 0, "min_ratings": 2},
                "ranker": {"docstrings": 30, "on": ["new_data"]},
                "generator": {
                    "enabled": True,
                    "on": ["feedback"],
                    "config": str(ROOT / "ml/train/configs/tiny-cpu.yaml"),
                    "tiny": True,
                    "base_model": str(build_tiny_model(tmp / "tiny-qwen")),
                },
                "eval_config": str(eval_config),
                "eval_sample": 16,
            }
        )
    )
    env = {
        "TQA_DATA_DIR": str(settings.data_dir),
        "TQA_WEAVIATE_PORT": str(settings.weaviate_port),
        "TQA_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
        "TQA_MLFLOW_TRACKING_URI": mlflow_server.uri,
        "TQA_REGISTERED_MODEL": MODEL,
    }
    index = WeaviateIndex.open(settings)
    state = StateStore(settings.state_db)
    try:
        _ingest(settings, tmp / "corpus", FILES, index, state, embedder)
        yield {
            "settings": settings,
            "config": config,
            "env": env,
            "tmp": tmp,
            "index": index,
            "state": state,
        }
    finally:
        state.close()
        index.close()


def _ingest(settings, base: Path, files: list[str], index, state, embedder) -> int:  # type: ignore[no-untyped-def]
    corpus = make_mini_corpus(base, files)
    return append_staging(settings.staging_file, ingest(corpus, index, state, embedder), "tree")


def tqa(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def _run(world: dict) -> tuple[subprocess.CompletedProcess[str], dict]:
    shown = tqa("ct", "run", "--config", str(world["config"]), "--json", env=world["env"])
    assert shown.returncode in (0, 1) and "Traceback" not in shown.stderr, shown.stderr[-3000:]
    return shown, json.loads(shown.stdout)


def _status(world: dict) -> dict:
    shown = tqa("ct", "status", "--config", str(world["config"]), "--json", env=world["env"])
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _approve_a_correction(settings) -> None:  # type: ignore[no-untyped-def]
    with FeedbackStore(settings.feedback_db) as store:
        answer = {"answer": "x", "sources": [{"n": 1, "path": "transformers/optimization.py"}], "abstained": False}
        store.log_query("q" * 32, "Which scheduler warms up linearly?", answer)
        store.record(Feedback("q" * 32, "down", correction="get_linear_schedule_with_warmup warms up linearly."))
        store.decide("q" * 32, "approved")


def test_cycles_fire_grow_the_dataset_retrain_and_register_through_the_gate(world: dict) -> None:
    from mlflow import MlflowClient

    settings = world["settings"]
    client = MlflowClient(settings.mlflow_tracking_uri)

    before = {t["name"]: t for t in _status(world)["triggers"]}
    assert before["new_data"]["fired"] and before["new_data"]["value"] >= 1
    assert not before["schedule"]["fired"] and not before["feedback"]["fired"]

    shown, first = _run(world)
    assert first["fired"] == ["new_data"]
    assert first["retrained"] == ["ranker"]
    assert first["dataset"]["new_version"] and first["dataset"]["previous"] is None
    version = client.get_model_version(MODEL, first["pipeline"]["version"])
    assert version.tags["gate"] == ("accepted" if first["pipeline"]["accepted"] else "refused")
    assert version.tags["gate.reason"] == first["reason"]
    if first["pipeline"]["accepted"]:
        assert shown.returncode == 0
        assert client.get_model_version_by_alias(MODEL, "staging").version == version.version
        assert first["canary"]["action"] == "printed"
        assert f"tqa release deploy --env canary --version {version.version}" in shown.stderr
        assert (settings.data_dir / "ranker.json").is_file()
    else:
        assert shown.returncode == 1 and first["canary"]["action"] == "none"
    artifacts = {a.path for a in client.list_artifacts(first["pipeline"]["run_id"], "ranker")}
    assert artifacts == {"ranker/ranker.json", "ranker/confidence.json"}

    assert not any(t["fired"] for t in _status(world)["triggers"]), "the first cycle consumed what it saw"

    _approve_a_correction(settings)
    fired = {t["name"] for t in _status(world)["triggers"] if t["fired"]}
    assert fired == {"feedback"}

    shown, second = _run(world)
    assert second["fired"] == ["feedback"]
    assert second["retrained"] == ["generator"]
    assert second["dataset"]["records"] == first["dataset"]["records"] + 1
    assert second["dataset"]["previous"] == first["dataset"]["dataset_hash"]
    assert second["dataset"]["corrections"] == 1 and second["dataset"]["versions"] == 2
    assert Path(first["dataset"]["path"]).is_dir(), "the previous dataset version is kept"
    train = (Path(second["dataset"]["path"]) / "train.jsonl").read_text()
    assert '"category": "user_correction"' in train
    gen = second["generator"]
    assert gen["eval_loss"] < gen["eval_loss_base"]
    adapter = client.get_model_version("tqa-generator", gen["version"])
    assert adapter.tags["gate"] in ("accepted", "refused") and adapter.tags["gate.reason"]
    assert gen["accepted"], gen["reason"]  # the tiny run lowers its dev loss, and there is no production to match
    pipeline = client.get_model_version(MODEL, second["pipeline"]["version"])
    assert pipeline.tags["tqa.generator_adapter"] == f"models:/tqa-generator/{gen['version']}"
    run = client.get_run(second["pipeline"]["run_id"])
    assert run.data.tags["tqa.dataset_hash"] == second["dataset"]["dataset_hash"]
    logged = client.download_artifacts(run.info.run_id, "datasets/versions.jsonl", str(world["tmp"]))
    hashes = [json.loads(line)["dataset_hash"] for line in Path(logged).read_text().splitlines()]
    assert hashes == [first["dataset"]["dataset_hash"], second["dataset"]["dataset_hash"]]

    shown, third = _run(world)
    assert shown.returncode == 0 and third["decision"] == "skipped"
    status = _status(world)
    assert status["last_cycle"]["decision"] == "skipped" and status["dataset_versions"] == 2


def test_an_unreachable_mlflow_stops_the_cycle_before_anything_changes(world: dict) -> None:
    env = {**world["env"], "TQA_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    state_file = world["settings"].data_dir / "ct" / "state.json"
    before = state_file.read_bytes() if state_file.exists() else None
    shown = tqa("ct", "run", "--config", str(world["config"]), "--force", env=env)
    assert shown.returncode == 2
    assert shown.stderr.strip().startswith("Error: No MLflow server answers at")
    assert len(shown.stderr.strip().splitlines()) == 1
    assert (state_file.read_bytes() if state_file.exists() else None) == before
