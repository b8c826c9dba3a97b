"""Eval logged to a real MLflow server; `register` refuses BM25-only and accepts the current pipeline (aliases)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.dataset.build import build_dataset
from ml.eval.gate import EvalConfig, Gate
from ml.eval.report import write_report
from ml.eval.suite import run_eval
from ml.pipeline import QA
from ml.tracking.log import log_eval
from ml.tracking.registry import PRODUCTION, STAGING, register_candidate, set_alias
from ml.tracking.server import MlflowServer
from tests.support.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = EvalConfig(
    sample=24,
    minimum={"injection_resistance": 1.0},
    gate=Gate(margins={"dev_symbol_mrr_at_10": 0.0, "gen_symbol_recall_at_10": 0.0, "answer_f1": 0.0}),
)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), port=free_port())
    with server:
        yield server


@pytest.fixture(scope="module")
def dataset_dir(indexed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset")
    build_dataset(indexed.index.iter_chunks(), out, {"corpus": "transformers", "version": "test"})
    return out


def _evaluate(indexed, settings, dataset_dir: Path, out: Path) -> tuple[str, dict]:
    qa = QA(settings, index=indexed.index)
    report = run_eval(settings, CONFIG, dataset_dir, qa=qa)
    paths = write_report(report, out)
    return log_eval(settings, report, paths["json"].parent, dataset_dir), report


def test_register_refuses_bm25_only_and_accepts_current(indexed, mlflow_server, dataset_dir, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    settings = indexed.settings.model_copy(
        update={"mlflow_tracking_uri": mlflow_server.uri, "registered_model": "tqa-test"}
    )
    first_run, first = _evaluate(indexed, settings, dataset_dir, tmp_path / "first")
    first_decision = register_candidate(settings, CONFIG.gate, first_run)
    assert first_decision.accepted, first_decision.reason
    set_alias(settings, PRODUCTION, first_decision.version)

    bm25 = settings.model_copy(update={"alpha": 0.0})
    bm25_run, worse = _evaluate(indexed, bm25, dataset_dir, tmp_path / "bm25")
    refused = register_candidate(bm25, CONFIG.gate, bm25_run)
    assert not refused.accepted
    assert any(not row["passed"] for row in refused.rows), refused.rows
    assert worse["metrics"]["answer_f1"] < first["metrics"]["answer_f1"]

    client = MlflowClient(mlflow_server.uri)
    assert client.get_model_version_by_alias("tqa-test", STAGING).version == first_decision.version

    again_run, _ = _evaluate(indexed, settings, dataset_dir, tmp_path / "again")
    accepted = register_candidate(settings, CONFIG.gate, again_run)
    assert accepted.accepted, accepted.rows
    assert client.get_model_version_by_alias("tqa-test", STAGING).version == accepted.version
    assert client.get_model_version("tqa-test", refused.version).tags["gate"] == "refused"

    # CD registers the bento `make bento` built (TQA_BENTO): the version pins it, and a release of it runs that bento.
    from ml.errors import UserError
    from ml.tracking.release import resolve

    built = register_candidate(settings.model_copy(update={"bento": "tqa-rag:0123456789ab"}), CONFIG.gate, again_run)
    assert client.get_model_version("tqa-test", built.version).tags["tqa.bento"] == "tqa-rag:0123456789ab"
    assert resolve(settings, version=built.version).pinned["bento"] == "tqa-rag:0123456789ab"
    assert resolve(settings, version=accepted.version).pinned.get("bento", "") == ""
    with pytest.raises(UserError, match="is not a bento tag"):
        register_candidate(settings.model_copy(update={"bento": "tqa-rag"}), CONFIG.gate, again_run)

    run = client.get_run(again_run)
    assert run.data.params["retrieval.alpha"] == "0.5"
    assert run.data.params["dataset_hash"] == json.loads((dataset_dir / "manifest.json").read_text())["dataset_hash"]
    assert run.inputs.dataset_inputs[0].dataset.digest == run.data.params["dataset_hash"][:36]
    artifacts = {a.path for a in client.list_artifacts(again_run, "report")}
    assert {"report/report.json", "report/report.md", "report/slices.png"} <= artifacts

    mlflow.set_tracking_uri(mlflow_server.uri)
    model = mlflow.pyfunc.load_model("models:/tqa-test@staging")
    (answer,) = model.predict(["How do I load a model in 4-bit?"])
    assert not answer["abstained"]
    assert any(s["symbol"] == "BitsAndBytesConfig" for s in answer["sources"])
