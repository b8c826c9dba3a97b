"""Evaluation settings (YAML, validated) and the two gates: thresholds for CI, margins over production to register."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from ml.errors import UserError


class Gate(BaseModel):
    """`tqa register` moves `staging` only when every metric here is >= production's plus its margin."""

    margins: dict[str, float] = Field(default_factory=dict)


class EvalConfig(BaseModel):
    """What `tqa eval run` measures and the bars it is held to."""

    sample: int = Field(default=500, ge=0, description="Generated eval pairs, stratified by category.")
    seed: int = 13
    k: int = Field(default=10, ge=1, le=50)
    minimum: dict[str, float] = Field(default_factory=dict, description="Metric -> lowest acceptable value.")
    maximum: dict[str, float] = Field(default_factory=dict, description="Metric -> highest acceptable value.")
    gate: Gate = Field(default_factory=Gate)


def load_config(path: Path | None = None) -> EvalConfig:
    """The YAML at `path`, or the packaged default (`ml/eval/eval.yaml`)."""
    import yaml

    if path is None:
        text = resources.files("ml.eval").joinpath("eval.yaml").read_text()
    elif not path.is_file():
        raise UserError(f"Eval config {path} does not exist.")
    else:
        text = path.read_text()
    try:
        return EvalConfig.model_validate(yaml.safe_load(text) or {})
    except (ValidationError, yaml.YAMLError) as exc:
        raise UserError(f"Eval config {path or 'eval.yaml'} is invalid: {exc}") from exc


def threshold_failures(metrics: dict[str, float], config: EvalConfig) -> list[str]:
    """Each configured bar the metrics miss, as a sentence; a configured metric that was not measured also fails."""
    failures = []
    for name, low in config.minimum.items():
        value = metrics.get(name)
        if value is None or value < low:
            failures.append(f"{name} = {_fmt(value)} is below the minimum {low}")
    for name, high in config.maximum.items():
        value = metrics.get(name)
        if value is None or value > high:
            failures.append(f"{name} = {_fmt(value)} is above the maximum {high}")
    return failures


def compare(candidate: dict[str, float], production: dict[str, float], gate: Gate) -> tuple[bool, list[dict]]:
    """Whether the candidate passes the gate against production, and one row per gate metric."""
    rows = []
    passed = True
    for name, margin in gate.margins.items():
        cand, prod = candidate.get(name), production.get(name)
        ok = cand is not None and (prod is None or cand >= prod + margin)
        passed &= ok
        rows.append({"metric": name, "candidate": cand, "production": prod, "margin": margin, "passed": ok})
    return passed, rows


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f}"
