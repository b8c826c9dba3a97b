"""`tqa train generator`: LoRA / QLoRA fine-tuning of the Qwen generator on RAG-format examples, with accelerate.

The config is YAML validated by `GeneratorConfig` (checked-in ones in `ml/train/configs/`). One code path serves
the tiny CPU run of the tests and the 14B run on two A100s: `accelerate launch --config_file
ml/train/configs/accelerate/{ddp,fsdp}.yaml -m ml.train.generator CONFIG` runs the same `train_generator` on every
process. Loss is masked to the answer tokens; every optimizer step logs its loss, time and tokens/s to MLflow with
the config, the dataset hash, the code SHA and the seed, so a run is reproducible from its MLflow record. The
adapter is logged as the run's `adapter` artifact and registered through the gate in `ml.tracking.generator`.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from ml.errors import UserError
from ml.settings import Settings

Say = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]


class LoraSettings(BaseModel):
    """The adapter: rank, scaling, dropout and the projections it wraps."""

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class GeneratorConfig(BaseModel):
    """A generator fine-tuning run: base model, adapter, data shape, optimisation and where it is registered."""

    base_model: str | None = Field(default=None, description="Hub name or local directory (`--base-model` wins).")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    quantization: Literal["none", "4bit"] = Field(default="none", description="4bit: QLoRA (NF4, bitsandbytes).")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    gradient_checkpointing: bool = False
    max_steps: int = Field(default=200, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    warmup_steps: int = Field(default=10, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=1, ge=1, description="Examples per device per micro-step.")
    gradient_accumulation: int = Field(default=1, ge=1)
    max_seq_len: int = Field(default=4096, ge=64, description="Longer examples are left out (and counted).")
    sources: int = Field(default=5, ge=1, le=20, description="Numbered sources per example (as served).")
    refusal_share: float = Field(default=0.1, ge=0.0, le=1.0)
    train_examples: int | None = Field(default=None, ge=1, description="Cap on training examples (None: all).")
    eval_examples: int = Field(default=256, ge=1, description="Dev (eval split) examples scored before and after.")
    seed: int = 13
    random_weights: bool = Field(
        default=False, description="Random weights from the base model's config (benchmarks of a 14B shape)."
    )
    accelerate_config: str | None = Field(default=None, description="The accelerate launch config it is meant for.")
    registered_model: str = "tqa-generator"
    min_eval_loss_reduction: float = Field(
        default=0.0, description="Registration needs eval loss below the base model's by more than this share."
    )

    @model_validator(mode="after")
    def _quantized_needs_cuda(self) -> GeneratorConfig:
        if self.quantization != "none" and self.device == "cpu":
            raise ValueError("quantization 4bit (QLoRA) runs on a CUDA device only; set device to cuda or auto")
        if self.quantization != "none" and self.random_weights:
            raise ValueError("random_weights cannot be quantized; benchmark QLoRA on a real checkpoint")
        return self

    def tiny(self) -> GeneratorConfig:
        """The same run shrunk to seconds on CPU: the tests' and benchmark's `--tiny`."""
        return self.model_copy(
            update={
                "device": "cpu" if self.quantization == "none" else self.device,
                "dtype": "float32",
                "max_steps": min(self.max_steps, 12),
                "warmup_steps": min(self.warmup_steps, 1),
                "train_examples": min(self.train_examples or 32, 32),
                "eval_examples": min(self.eval_examples, 8),
                "max_seq_len": min(self.max_seq_len, 2048),
                "sources": min(self.sources, 2),
            }
        )


def load_config(path: Path) -> GeneratorConfig:
    """The YAML at `path`, or a packaged one by name (`tiny-cpu`, `qwen14b-lora`, `qwen14b-qlora`)."""
    import yaml

    if not path.is_file():
        packaged = resources.files("ml.train").joinpath("configs", f"{path.name.removesuffix('.yaml')}.yaml")
        if not packaged.is_file():
            raise UserError(f"Training config {path} does not exist; see ml/train/configs/ for examples.")
        text = packaged.read_text()
    else:
        text = path.read_text()
    try:
        return GeneratorConfig.model_validate(yaml.safe_load(text) or {})
    except (ValidationError, yaml.YAMLError) as exc:
        raise UserError(f"Training config {path} is invalid: {_first_error(exc)}.") from exc


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}"
    return str(exc).splitlines()[0]


def code_sha() -> str:
    """The commit of this checkout, `+dirty` when it has uncommitted changes; `unknown` outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def check_hardware(config: GeneratorConfig) -> str:
    """The device the run uses; one sentence when the config needs a GPU this machine does not have."""
    import torch

    cuda = torch.cuda.is_available()
    if config.quantization != "none":
        if not cuda:
            raise UserError(
                "This config asks for 4-bit QLoRA, which needs a CUDA GPU and this machine has none; "
                "use a LoRA config with device cpu (or --tiny on a LoRA config) here."
            )
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise UserError("QLoRA needs bitsandbytes; install it on the GPU host (`pip install bitsandbytes`).")
    if config.device == "cuda" and not cuda:
        raise UserError(
            "This config asks for device cuda and this machine has no CUDA GPU; use --tiny or a CPU config."
        )
    return "cuda" if (config.device == "auto" and cuda) or config.device == "cuda" else "cpu"


@dataclass
class TrainResult:
    """What a run produced: the adapter, its MLflow run, the loss curve and the eval numbers."""

    run_id: str | None
    adapter_dir: Path
    losses: list[float]
    step_times: list[float]
    eval_loss_base: float
    eval_loss: float
    dataset_hash: str
    examples: dict[str, int] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    peak_memory_gb: float | None = None

    @property
    def eval_loss_reduction(self) -> float:
        """Share of the base model's dev loss the adapter removes (higher is better)."""
        return (self.eval_loss_base - self.eval_loss) / self.eval_loss_base if self.eval_loss_base else 0.0


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return flat


def _encode(tokenizer: Any, example: Any, max_len: int) -> dict[str, list[int]] | None:
    prompt = tokenizer.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(example.answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + answer_ids
    if len(ids) > max_len:
        return None
    return {"input_ids": ids, "labels": [-100] * len(prompt_ids) + answer_ids}


def _collate(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, Any]]:
    import torch

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = [r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]
        labels = [r["labels"] + [-100] * (width - len(r["labels"])) for r in rows]
        mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}

    return collate


def _eval_loss(model: Any, rows: list[dict[str, list[int]]], collate: Any, accelerator: Any) -> float:
    """Token-weighted mean loss of the answers over `rows` (every process scores all rows; they are few)."""
    import torch

    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row in rows:
            batch = {k: v.to(accelerator.device) for k, v in collate([row]).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            tokens += n
    model.train()
    return total / max(tokens, 1)


def _load_base(config: GeneratorConfig, base: str, device: str, place: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ml.llm.generate import pick_dtype

    local = Path(base).expanduser()
    if local.exists() and not (local / "config.json").exists():
        raise UserError(f"{local} has no config.json; point base_model at a saved transformers model directory.")
    kwargs: dict[str, Any] = {"dtype": pick_dtype(config.dtype, device)}
    if config.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        if config.random_weights:
            from transformers import AutoConfig

            with torch.device(place):  # built on this process's device, not in host memory first
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base), dtype=kwargs["dtype"])
        else:
            model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    except OSError as exc:
        raise UserError(
            f"Could not load base model {base!r} ({exc.__class__.__name__}); give a local model directory "
            "or a name the Hugging Face cache already holds."
        ) from exc
    if tokenizer.chat_template is None:
        raise UserError(f"The tokenizer of {base!r} has no chat template; fine-tune an instruct/chat model.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def train_generator(
    settings: Settings,
    config: GeneratorConfig,
    dataset_dir: Path,
    out_dir: Path,
    *,
    base_model: str | None = None,
    track: bool = True,
    say: Say = lambda _: None,
) -> TrainResult:
    """Fine-tune a LoRA adapter on the dataset's train split, score the eval split, log everything to MLflow.

    Every check a user can fail (dataset, hardware, base model, MLflow) runs before the first step, so a bad input
    costs one sentence and leaves no run behind.
    """
    from ml.train.generator_data import load_splits, rag_examples

    base = base_model or config.base_model
    if not base:
        raise UserError("The training config names no base_model; set it or pass --base-model.")
    dataset_hash, train_pairs, eval_pairs = load_splits(dataset_dir)
    if not eval_pairs:
        raise UserError(f"The eval split of {dataset_dir} is empty; the adapter cannot be scored on the dev split.")
    device = check_hardware(config)
    mlflow = None
    if track:
        from ml.tracking.log import connect

        mlflow = connect(settings.model_copy(update={"mlflow_experiment": "tqa-generator"}))

    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model

    accelerator = Accelerator(gradient_accumulation_steps=config.gradient_accumulation, cpu=device == "cpu")
    set_seed(config.seed)
    model, tokenizer = _load_base(config, base, device, str(accelerator.device))
    if config.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )

    train_examples = rag_examples(train_pairs, config.sources, config.refusal_share, config.seed)
    eval_examples = rag_examples(eval_pairs, config.sources, 0.0, config.seed)[: config.eval_examples]
    if config.train_examples:
        train_examples = train_examples[: config.train_examples]
    train_rows = [r for r in (_encode(tokenizer, e, config.max_seq_len) for e in train_examples) if r]
    eval_rows = [r for r in (_encode(tokenizer, e, config.max_seq_len) for e in eval_examples) if r]
    if not train_rows or not eval_rows:
        raise UserError(f"No example fits in max_seq_len={config.max_seq_len} tokens; raise it in the config.")
    counts = {
        "train": len(train_rows),
        "train_too_long": len(train_examples) - len(train_rows),
        "eval": len(eval_rows),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    say(f"{counts['train']} training and {counts['eval']} dev examples on {device} ({base})")

    collate = _collate(tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        train_rows, batch_size=config.batch_size, shuffle=True, collate_fn=collate, generator=generator
    )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        return max(0.0, (config.max_steps - step) / max(1, config.max_steps - config.warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    eval_loss_base = _eval_loss(model, eval_rows, collate, accelerator)
    losses: list[float] = []
    step_times: list[float] = []
    tokens_seen = 0
    run_ctx = mlflow.start_run(run_name=f"lora-r{config.lora.r}") if mlflow and accelerator.is_main_process else None
    try:
        if run_ctx is not None:
            assert mlflow is not None
            mlflow.log_params(_flatten({**config.model_dump(mode="json"), "base_model": base}))
            mlflow.log_params({"examples." + k: v for k, v in counts.items()})
            mlflow.set_tags(
                {
                    "tqa.kind": "generator-train",
                    "tqa.dataset_hash": dataset_hash,
                    "tqa.code_sha": code_sha(),
                    "tqa.seed": str(config.seed),
                    "tqa.base_model": base,
                    "tqa.device": device,
                }
            )
            mlflow.log_dict(config.model_dump(mode="json"), "config/generator.json")
            mlflow.log_metric("eval_loss_base", eval_loss_base)
        model.train()
        step, window, window_tokens = 0, 0.0, 0
        started = time.perf_counter()
        batches = iter(loader)
        while step < config.max_steps:
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            window += float(loss.detach()) / config.gradient_accumulation
            window_tokens += int(batch["attention_mask"].sum())
            if not accelerator.sync_gradients:
                continue
            value = float(accelerator.gather(torch.tensor([window], device=accelerator.device)).mean())
            elapsed = time.perf_counter() - started
            losses.append(value)
            step_times.append(elapsed)
            tokens_seen += window_tokens * accelerator.num_processes
            if run_ctx is not None:
                assert mlflow is not None
                mlflow.log_metrics(
                    {
                        "train_loss": value,
                        "step_time_s": elapsed,
                        "tokens_per_s": window_tokens * accelerator.num_processes / elapsed,
                        "learning_rate": scheduler.get_last_lr()[0],
                    },
                    step=step,
                )
            if not math.isfinite(value):
                raise UserError(f"Training loss became {value} at step {step}; lower learning_rate in the config.")
            step += 1
            window, window_tokens = 0.0, 0
            started = time.perf_counter()
        eval_loss = _eval_loss(model, eval_rows, collate, accelerator)
        adapter_dir = out_dir / "adapter"
        accelerator.wait_for_everyone()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        result = TrainResult(
            run_ctx.info.run_id if run_ctx is not None else None,
            adapter_dir,
            losses,
            step_times,
            eval_loss_base,
            eval_loss,
            dataset_hash,
            counts,
            tokens_seen / max(sum(step_times), 1e-9),
            peak,
        )
        # Gathered on every process: under FSDP the full state dict is a collective.
        state_dict = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.save_pretrained(adapter_dir, state_dict=state_dict, save_embedding_layers=False)
            tokenizer.save_pretrained(adapter_dir)
            (adapter_dir / "tqa_training.json").write_text(
                json.dumps({"base_model": base, "dataset_hash": dataset_hash, "seed": config.seed}, indent=2)
            )
            say(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; dev loss {eval_loss_base:.3f} -> {eval_loss:.3f}")
        if run_ctx is not None:
            assert mlflow is not None
            metrics = {
                "eval_loss": eval_loss,
                "eval_loss_reduction": result.eval_loss_reduction,
                "train_loss_first": losses[0],
                "train_loss_last": losses[-1],
                "step_time_mean_s": sum(step_times) / len(step_times),
                "tokens_per_s_mean": result.tokens_per_s,
            }
            if peak is not None:
                metrics["peak_memory_gb"] = peak
            mlflow.log_metrics(metrics)
            mlflow.log_artifacts(str(adapter_dir), artifact_path="adapter")
        return result
    except BaseException:
        if run_ctx is not None:
            assert mlflow is not None
            mlflow.end_run(status="FAILED")
            run_ctx = None
        raise
    finally:
        if run_ctx is not None:
            assert mlflow is not None
            mlflow.end_run()


def main(argv: list[str] | None = None) -> None:
    """`accelerate launch ... -m ml.train.generator CONFIG [--dataset DIR] [--out DIR]`: the multi-GPU entry point."""
    import argparse

    parser = argparse.ArgumentParser(description="LoRA fine-tuning of the generator (run under accelerate launch).")
    parser.add_argument("config", type=Path)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--base-model", default=None)
    parser.add_argument("--register", action="store_true", help="Register the adapter through the gate.")
    args = parser.parse_args(argv)
    settings = Settings()
    config = load_config(args.config)
    result = train_generator(
        settings,
        config,
        args.dataset or settings.data_dir / "dataset",
        args.out or settings.data_dir / "generator",
        base_model=args.base_model,
        say=print,
    )
    summary: dict[str, Any] = {
        "run_id": result.run_id,
        "adapter": str(result.adapter_dir),
        "eval_loss": result.eval_loss,
    }
    summary.update(steps=len(result.losses), tokens_per_s=result.tokens_per_s, peak_memory_gb=result.peak_memory_gb)
    if args.register and result.run_id:  # only the main process has a run
        from ml.tracking.generator import register_adapter

        decision = register_adapter(settings, result.run_id, config.registered_model, config.min_eval_loss_reduction)
        summary.update(version=decision.version, accepted=decision.accepted, reason=decision.reason)
    print(json.dumps(summary))


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:
        raise SystemExit(f"Error: {exc}") from None
