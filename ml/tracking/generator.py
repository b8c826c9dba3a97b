"""The generator's LoRA adapter in the registry: checked, registered through the gate, fetched back by the runner.

A version of `tqa-generator` (the config's `registered_model`) is the `adapter` artifact of a training run. The
gate is the one `tqa register` uses (`ml.eval.gate.compare`): the candidate's `eval_loss_reduction` (share of the
base model's dev loss the adapter removes) must clear the config's minimum, and must not fall below production's
by more than the margin. `staging` moves only when it passes; the version is tagged with the decision either way.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ml.errors import UserError
from ml.eval.gate import Gate, compare
from ml.settings import Settings
from ml.tracking.registry import PRODUCTION, STAGING, Decision

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
GATE = Gate(margins={"eval_loss_reduction": -0.01})


def verify_adapter(directory: Path) -> dict[str, Any]:
    """The adapter's config after reading its config and every tensor header; one sentence when it is damaged."""
    directory = Path(directory)
    missing = [name for name in ADAPTER_FILES if not (directory / name).is_file()]
    if missing:
        raise UserError(f"{directory} is not a LoRA adapter: {', '.join(missing)} missing; train one first.")
    try:
        config = json.loads((directory / "adapter_config.json").read_text())
        from safetensors import safe_open

        with safe_open(str(directory / "adapter_model.safetensors"), framework="pt") as f:
            keys = list(f.keys())
            for key in keys:
                f.get_slice(key)
    except Exception as exc:  # safetensors raises its own SafetensorError besides OSError and ValueError
        raise UserError(
            f"The adapter in {directory} is corrupt ({exc.__class__.__name__}); retrain or re-fetch it."
        ) from exc
    if not keys or not any("lora_" in k for k in keys):
        raise UserError(f"The adapter in {directory} holds no LoRA weights; retrain it.")
    return config


def register_adapter(settings: Settings, run_id: str, name: str, min_reduction: float = 0.0) -> Decision:
    """Register the run's adapter as a version of `name`; `staging` moves only when it passes the gate.

    The adapter is downloaded and verified before anything is registered: a damaged one registers nothing.
    """
    from ml.tracking.log import connect

    mlflow = connect(settings)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise UserError(f"No MLflow run {run_id} at {settings.mlflow_tracking_uri}.") from exc
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="adapter", dst_path=tmp)
        except (MlflowException, OSError) as exc:
            raise UserError(f"Run {run_id} logged no adapter; train with `tqa train generator` first.") from exc
        verify_adapter(Path(local))
    candidate = dict(run.data.metrics)
    reduction = candidate.get("eval_loss_reduction")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="LoRA adapters of the Qwen generator (tqa train generator).")
    version = str(
        client.create_model_version(name, f"runs:/{run_id}/adapter", run_id, tags={"tqa.kind": "adapter"}).version
    )
    try:
        production = client.get_model_version_by_alias(name, PRODUCTION)
    except MlflowException:
        production = None
    baseline = dict(client.get_run(production.run_id).data.metrics) if production else {}
    passed, rows = compare(candidate, baseline, GATE)
    if reduction is None or reduction <= min_reduction:
        decision = Decision(
            name,
            version,
            run_id,
            False,
            None,
            rows,
            f"dev loss fell by {_pct(reduction)}, not more than {_pct(min_reduction)}",
        )
    elif not passed:
        decision = Decision(name, version, run_id, False, production.version if production else None, rows)
        decision.reason = "does not match production on eval_loss_reduction"
    else:
        why = "beats the base model and matches production" if production else "beats the base model; no production yet"
        decision = Decision(name, version, run_id, True, production.version if production else None, rows, why)
    client.set_model_version_tag(name, version, "gate", "accepted" if decision.accepted else "refused")
    client.set_model_version_tag(name, version, "gate.reason", decision.reason)
    if decision.accepted:
        client.set_registered_model_alias(name, STAGING, version)
    return decision


def fetch_adapter(uri: str, tracking_uri: str | None, dst: Path) -> Path:
    """A local adapter directory for `uri`: a path as is, or `models:/name/version`, `models:/name@alias`, `runs:/`
    downloaded from the tracking server; verified either way."""
    if "://" not in uri and ":/" not in uri:
        return _checked(Path(uri).expanduser())
    from ml.tracking.server import disable_telemetry

    disable_telemetry()
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError) as exc:
        where = tracking_uri or "the default tracking URI"
        raise UserError(f"Could not fetch adapter {uri} from MLflow at {where} ({exc.__class__.__name__}).") from exc
    return _checked(local)


def _checked(directory: Path) -> Path:
    verify_adapter(directory)
    return directory


def _pct(value: float | None) -> str:
    return "nothing" if value is None else f"{100 * value:.1f}%"
