"""The continuous-training config (YAML validated here): triggers, what each one retrains, eval and release."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from ml.errors import UserError

TriggerName = Literal["new_data", "feedback", "schedule", "degradation"]
ALL_TRIGGERS: list[TriggerName] = ["new_data", "feedback", "schedule", "degradation"]


class Triggers(BaseModel):
    """When a cycle retrains; a threshold of 0 turns its trigger off."""

    new_changes: int = Field(default=50, ge=0, description="Staging-buffer changes since the last dataset.")
    approved_feedback: int = Field(default=20, ge=0, description="Corrections approved since the last cycle.")
    schedule_hours: float = Field(default=168.0, ge=0, description="Retrain at least this often.")
    thumbs_down_share: float = Field(
        default=0.3, ge=0, le=1, description="Degradation: thumbs-down share of recent ratings at or above this."
    )
    min_ratings: int = Field(default=20, ge=1, description="Ratings needed before the thumbs-down share counts.")
    window_hours: float = Field(default=168.0, gt=0, description="How far back ratings count for degradation.")


class RankerRetrain(BaseModel):
    enabled: bool = True
    on: list[TriggerName] = Field(default_factory=lambda: list(ALL_TRIGGERS))
    docstrings: int = Field(default=400, ge=0, description="Docstring-derived training questions.")


class GeneratorRetrain(BaseModel):
    enabled: bool = False
    on: list[TriggerName] = Field(default_factory=lambda: ["feedback", "schedule", "degradation"])
    config: Path = Field(default=Path("ml/train/configs/qwen14b-lora.yaml"), description="Training YAML.")
    tiny: bool = Field(default=False, description="Shrink the run to CPU seconds (tests, benchmarks).")
    base_model: str | None = None


class Release(BaseModel):
    """What an accepted version does next."""

    canary: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: start it when a release is deployed here, else print the commands."
    )
    steps: list[int] = Field(default_factory=lambda: [5, 25, 50, 100])
    interval_s: float = Field(default=60.0, gt=0)


class CTConfig(BaseModel):
    """One `tqa ct run`: what fires it, what it retrains, how it is evaluated and released."""

    triggers: Triggers = Field(default_factory=Triggers)
    sync_path: Path | None = Field(default=None, description="A Transformers checkout to sync first.")
    ranker: RankerRetrain = Field(default_factory=RankerRetrain)
    generator: GeneratorRetrain = Field(default_factory=GeneratorRetrain)
    eval_config: Path | None = Field(default=None, description="Eval YAML (default: the packaged eval.yaml).")
    eval_sample: int | None = Field(default=None, ge=0, description="Generated eval pairs (overrides eval YAML).")
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    release: Release = Field(default_factory=Release)


def load_ct_config(path: Path | None) -> CTConfig:
    """The YAML at `path` (see ops/ct/ct.yaml), or the defaults."""
    import yaml

    if path is None:
        return CTConfig()
    if not path.is_file():
        raise UserError(f"CT config {path} does not exist; see ops/ct/ct.yaml.")
    try:
        return CTConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"CT config {path} is invalid: {'.'.join(map(str, err['loc']))}: {err['msg']}.") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"CT config {path} is not valid YAML ({exc.__class__.__name__}).") from exc
