"""Quantized serving variants: each checked-in YAML becomes runner settings; the GPU script refuses to fake numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml.errors import UserError
from serving.quantized import VARIANTS, load_variant

ROOT = Path(__file__).resolve().parents[2]


def test_every_variant_loads_into_runner_settings() -> None:
    from serving.qwen_runner import RunnerSettings

    seen = {}
    for name in VARIANTS:
        variant = load_variant(name)
        settings = RunnerSettings(**{k.removeprefix("TQA_RUNNER_").lower(): v for k, v in variant.env().items()})
        seen[name] = (settings.engine, settings.quantization)
    assert seen == {"bf16": ("vllm", "none"), "fp8": ("vllm", "fp8"), "awq": ("vllm", "awq"), "gptq": ("vllm", "gptq")}
    with pytest.raises(UserError, match="No serving variant 'int3'"):
        load_variant("int3")


def test_the_measurement_script_says_in_one_sentence_that_it_needs_a_gpu() -> None:
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("this machine can run the measurement")
    shown = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quantized_gpu.py")], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 2
    assert shown.stdout == ""
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(".") and "GPU" in lines[0]
