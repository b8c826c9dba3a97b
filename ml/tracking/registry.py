"""Registers a candidate pipeline and moves the `staging` alias only when its eval beats `production`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ml.errors import UserError
from ml.eval.gate import Gate, compare
from ml.settings import Settings

STAGING, PRODUCTION = "staging", "production"
# The version tag naming the RAG bento a version runs (set at registration; see ml/tracking/release.py).
BENTO_TAG = "tqa.bento"


def _is_bento_tag(tag: str) -> bool:
    name, _, version = tag.partition(":")
    return bool(name) and bool(version) and version != "latest" and " " not in tag


@dataclass
class Decision:
    """What `tqa register` decided and why."""

    model: str
    version: str
    run_id: str
    accepted: bool
    against: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""


def latest_eval_run(client: Any, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"No MLflow experiment '{experiment}'; run `tqa eval run` first.")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.`tqa.kind` = 'eval'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise UserError(f"No eval run in experiment '{experiment}'; run `tqa eval run` first.")
    return str(runs[0].info.run_id)


def register_candidate(settings: Settings, gate: Gate, run_id: str | None = None) -> Decision:
    """Register the run's pipeline as a new version; point `staging` at it only if it passes the gate.

    With `settings.bento` (TQA_BENTO, the tag `make bento` printed), the version pins that RAG bento: a release of
    the version runs it (`bentoml serve <tag>`), not whatever code the serving host has.
    """
    from ml.tracking.log import connect

    if settings.bento and not _is_bento_tag(settings.bento):
        raise UserError(f"TQA_BENTO '{settings.bento}' is not a bento tag; give the name:version `make bento` printed.")

    mlflow = connect(settings)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    run_id = run_id or latest_eval_run(client, settings.mlflow_experiment)
    run = client.get_run(run_id)
    candidate = dict(run.data.metrics)
    name = settings.registered_model
    version = mlflow.register_model(f"runs:/{run_id}/qa", name).version
    try:
        production = client.get_model_version_by_alias(name, PRODUCTION)
    except MlflowException:
        production = None
    if run.data.tags.get("tqa.thresholds_passed") != "true":
        decision = Decision(name, str(version), run_id, False, None, reason="the eval missed its configured thresholds")
    elif production is None:
        decision = Decision(name, str(version), run_id, True, None, reason="no production version to beat yet")
        decision.rows = compare(candidate, {}, gate)[1]
    else:
        baseline = dict(client.get_run(production.run_id).data.metrics)
        passed, rows = compare(candidate, baseline, gate)
        why = (
            "beats production on every gate metric"
            if passed
            else "does not beat production on " + ", ".join(r["metric"] for r in rows if not r["passed"])
        )
        decision = Decision(name, str(version), run_id, passed, str(production.version), rows, why)
    if settings.bento:
        client.set_model_version_tag(name, str(version), BENTO_TAG, settings.bento)
    client.set_model_version_tag(name, str(version), "gate", "accepted" if decision.accepted else "refused")
    client.set_model_version_tag(name, str(version), "gate.reason", decision.reason)
    if decision.accepted:
        client.set_registered_model_alias(name, STAGING, str(version))
    return decision


def set_alias(settings: Settings, alias: str, version: str) -> None:
    """Point an alias at a version (promotion and rollback move aliases, never stages)."""
    from ml.tracking.log import connect

    connect(settings)
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(settings.registered_model, alias, version)
