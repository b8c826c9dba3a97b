"""Logs an evaluation to MLflow: parameters, metrics, the report, the dataset version and the pipeline model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ml.settings import Settings
from ml.tracking.server import disable_telemetry


def connect(settings: Settings) -> Any:
    """The mlflow module pointed at the configured server and experiment; a clear error if nothing answers."""
    disable_telemetry()
    import httpx
    import mlflow

    from ml.errors import UserError

    uri = settings.mlflow_tracking_uri
    if uri.startswith("http"):
        try:
            httpx.get(f"{uri.rstrip('/')}/health", timeout=3.0).raise_for_status()
        except httpx.HTTPError as exc:
            raise UserError(
                f"No MLflow server answers at {uri}; start one with `tqa mlflow up` (or `make mlflow`), "
                "or set TQA_MLFLOW_TRACKING_URI."
            ) from exc
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(settings.mlflow_experiment)
    return mlflow


def params_of(report: dict[str, Any]) -> dict[str, str]:
    meta = report["meta"]
    params = {
        "corpus": f"{meta['corpus']['name']} {meta['corpus']['version']}",
        "index.collection": meta["index"]["collection"],
        "index.chunks": meta["index"]["chunks"],
        "index.data_dir": meta["index"]["data_dir"],
        "answerer": meta["answerer"],
        "embedding_model": meta["embedding_model"],
        "llm_model": meta["llm_model"] or "-",
        "abstain_threshold": meta["abstain_threshold"],
        "dataset_hash": meta["dataset"].get("dataset_hash", "-"),
        "eval.sample": meta["config"]["sample"],
        "eval.seed": meta["config"]["seed"],
        "eval.k": meta["config"]["k"],
        "eval.items": meta["items"],
    }
    params.update({f"retrieval.{k}": v for k, v in meta["retrieval"].items()})
    return {k: str(v) for k, v in params.items()}


def log_eval(
    settings: Settings,
    report: dict[str, Any],
    report_dir: Path,
    dataset_dir: Path | None = None,
    log_model: bool = True,
) -> str:
    """One MLflow run for one evaluation; returns the run id."""
    mlflow = connect(settings)
    meta = report["meta"]
    name = f"{meta['answerer']}-alpha{meta['retrieval']['alpha']}"
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_params(params_of(report))
        mlflow.log_metrics({k: float(v) for k, v in report["metrics"].items()})
        for dim, values in report["slices"].items():
            for value, row in values.items():
                for metric in ("answer_f1", "symbol_recall_at_5", "citation_support"):
                    if row.get(metric) is not None:
                        mlflow.log_metric(f"slice.{dim}.{_safe(value)}.{metric}", float(row[metric]))
        mlflow.set_tags(
            {
                "tqa.kind": "eval",
                "tqa.thresholds_passed": str(report["thresholds"]["passed"]).lower(),
                "tqa.dataset_hash": meta["dataset"].get("dataset_hash", ""),
            }
        )
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        if dataset_dir is not None and meta["dataset"]:
            _log_dataset(mlflow, dataset_dir, meta["dataset"]["dataset_hash"])
        if log_model:
            from ml.tracking.model import log_pipeline

            log_pipeline(settings, report_dir / "model")
        return str(run.info.run_id)


def _log_dataset(mlflow: Any, dataset_dir: Path, dataset_hash: str) -> None:
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        # MLflow registers the local source under two names and warns that it picked one of them.
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(dataset_dir.resolve()))
    dataset = MetaDataset(source=source, name="tqa-qa-dataset", digest=dataset_hash[:36])
    mlflow.log_input(dataset, context="eval")


def _safe(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in value)
