"""Loading a causal LM and its tokenizer with transformers: by hub name or local path, bf16 on GPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ml.errors import UserError

DType = Literal["auto", "bfloat16", "float16", "float32"]


@dataclass
class LoadedModel:
    """A model ready to generate: weights on their device, the tokenizer with its chat template."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    name: str


def pick_device(device: str = "auto") -> str:
    """``cuda`` when a GPU is present and ``device`` is ``auto``, else what was asked."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: DType, device: str) -> Any:
    """bf16 on GPU, fp32 on CPU (CPU bf16 matmuls are slow on most machines) unless asked otherwise."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_model(
    name_or_path: str,
    *,
    device: str = "auto",
    dtype: DType = "auto",
    random_weights: bool = False,
    trust_remote_code: bool = False,
    adapter: Path | None = None,
) -> LoadedModel:
    """Load `name_or_path` with `AutoModelForCausalLM` (``device_map`` on GPU) and its tokenizer.

    ``random_weights`` builds the model from its config with random initialisation instead of reading weights:
    benchmarks use it to measure a full-size architecture without its checkpoint. ``adapter`` is a LoRA adapter
    directory (`tqa train generator`) applied with peft and merged into the weights, so decoding costs what the
    base model costs.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    local = Path(name_or_path).expanduser()
    if local.exists() and not (local / "config.json").exists():
        raise UserError(f"{local} has no config.json; point TQA_RUNNER_MODEL at a saved transformers model directory.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        if random_weights:
            config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        else:
            kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
            if device.startswith("cuda"):
                kwargs["device_map"] = "auto" if device == "cuda" else device
            model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
            if not device.startswith("cuda"):
                model.to(device)
    except OSError as exc:
        raise UserError(
            f"Could not load model {name_or_path!r} ({exc.__class__.__name__}); give a local model directory "
            "or a name the Hugging Face cache already holds."
        ) from exc
    if adapter is not None:
        model = apply_adapter(model, adapter)
    model.eval()
    if tokenizer.chat_template is None:
        raise UserError(f"The tokenizer of {name_or_path!r} has no chat template; use an instruct/chat model.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=str(next(model.parameters()).device),
        dtype=str(torch_dtype).removeprefix("torch."),
        name=name_or_path,
    )


def apply_adapter(model: Any, adapter: Path) -> Any:
    """`model` with the LoRA adapter in `adapter` merged in; one sentence when the adapter is damaged or mismatched."""
    from peft import PeftModel

    from ml.tracking.generator import verify_adapter

    verify_adapter(adapter)
    try:
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(
            f"The adapter in {adapter} does not fit this base model ({exc.__class__.__name__}); "
            "serve the base model it was trained on."
        ) from exc
    return merged
