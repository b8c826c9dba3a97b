"""Quantized serving variants of the generator for the vLLM runner: one YAML each, turned into runner settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from ml.errors import UserError

HERE = Path(__file__).parent
VARIANTS = ("bf16", "fp8", "awq", "gptq")


class Variant(BaseModel):
    """A runner configuration: which checkpoint, which vLLM quantization, which activation dtype."""

    name: str
    model: str
    engine: Literal["vllm", "transformers", "auto"] = "vllm"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    quantization: Literal["none", "fp8", "awq", "gptq"] = "none"

    def env(self) -> dict[str, str]:
        """`TQA_RUNNER_*` variables that make `bentoml serve serving.qwen_runner:QwenRunner` serve this variant."""
        return {
            "TQA_RUNNER_MODEL": self.model,
            "TQA_RUNNER_ENGINE": self.engine,
            "TQA_RUNNER_DTYPE": self.dtype,
            "TQA_RUNNER_QUANTIZATION": self.quantization,
        }


def load_variant(name_or_path: str) -> Variant:
    """A checked-in variant by name (bf16, fp8, awq, gptq) or a YAML file."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        path = HERE / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(f"No serving variant {name_or_path!r}; use one of {', '.join(VARIANTS)} or a YAML file.")
    try:
        return Variant.model_validate(yaml.safe_load(path.read_text()))
    except (ValidationError, yaml.YAMLError) as exc:
        raise UserError(f"Serving variant {path} is invalid ({exc.__class__.__name__}).") from exc
