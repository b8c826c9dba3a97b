"""LoRA on the tiny Qwen2 on CPU: the loss curve, seconds per optimizer step and tokens/s of `tqa train generator`.

The same code path as the 14B run (`ml.train.generator.train_generator`, accelerate, peft), on a random-weight
tiny Qwen2 (tests/support/tiny_qwen.py) and a dataset generated from a few transformers modules.

    python bench/lora_tiny.py [--steps 12] [--config ml/train/configs/tiny-cpu.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from bench.common import machine
    from ml.settings import Settings
    from ml.train.generator import load_config, train_generator
    from tests.support.generator import tiny_dataset
    from tests.support.tiny_qwen import build_tiny_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "ml" / "train" / "configs" / "tiny-cpu.yaml")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    config = load_config(args.config).tiny().model_copy(update={"max_steps": args.steps})
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        dataset = tiny_dataset(base)
        model = build_tiny_model(base / "model")
        result = train_generator(Settings(), config, dataset, base / "out", base_model=str(model), track=False)
    print(f"machine: {machine()}")
    print(f"examples: {result.examples}")
    print("step  loss    seconds")
    for step, (loss, seconds) in enumerate(zip(result.losses, result.step_times, strict=True)):
        print(f"{step:>4}  {loss:.4f}  {seconds:.3f}")
    print(f"loss first/last: {result.losses[0]:.4f} / {result.losses[-1]:.4f}")
    print(f"dev loss base/adapted: {result.eval_loss_base:.4f} / {result.eval_loss:.4f}")
    print(f"step time median: {statistics.median(result.step_times):.3f} s; tokens/s {result.tokens_per_s:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
