"""LoRA on Qwen2.5-14B-Instruct's shape on a GPU: seconds per optimizer step, tokens/s and peak memory.

Real 14B weights cannot be downloaded on the project's machines, so the model is built with random weights from
Qwen2.5-14B-Instruct's architecture (the speed and memory of a step do not depend on the values of the weights);
the code path is `tqa train generator`'s (`ml.train.generator.train_generator`, accelerate, peft, gradient
checkpointing) with the checked-in `qwen14b-lora.yaml`, on RAG examples from a small generated dataset. With a real
checkpoint, pass --base-model. Without a CUDA device it says so in one sentence and exits with status 2.

    python bench/lora_gpu.py [--steps 10] [--base-model DIR] [--config ml/train/configs/qwen14b-lora.yaml]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "ml" / "train" / "configs" / "qwen14b-lora.yaml")
    parser.add_argument("--base-model", default=None, help="A real checkpoint (default: random 14B-shaped weights).")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("This machine has no CUDA GPU, so the 14B LoRA step cannot be measured here.", file=sys.stderr)
        return 2
    from ml.settings import Settings
    from ml.train.generator import load_config, train_generator
    from tests.support.generator import tiny_dataset
    from tests.support.tiny_qwen import QWEN25_14B, build_tiny_model

    config = load_config(args.config).model_copy(
        update={"max_steps": args.steps, "warmup_steps": 1, "train_examples": 64, "eval_examples": 4}
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        dataset = tiny_dataset(base)
        model = args.base_model
        if model is None:
            model = str(build_tiny_model(base / "qwen14b-shape", weights=False, **QWEN25_14B))
            config = config.model_copy(update={"random_weights": True})
        result = train_generator(Settings(), config, dataset, base / "out", base_model=model, track=False)
    steady = result.step_times[1:] or result.step_times
    print(
        json.dumps(
            {
                "gpu": torch.cuda.get_device_name(0),
                "config": args.config.name,
                "random_weights": config.random_weights,
                "examples": result.examples,
                "batch_size": config.batch_size,
                "gradient_accumulation": config.gradient_accumulation,
                "step_s_median": statistics.median(steady),
                "tokens_per_s": result.tokens_per_s,
                "peak_memory_gb": result.peak_memory_gb,
                "loss_first_last": [result.losses[0], result.losses[-1]],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
