"""Quantized serving variants against bf16: dev-split answer loss and generation latency, on a GPU with vLLM.

For each variant in `serving/quantized/` (bf16 first, as the reference) it loads the model in vLLM exactly as the
runner does (`quantization`, `dtype`, the adapter as a LoRA request when given), scores the reference answers of
RAG-format dev examples (the prompt the answerer sends; loss over the answer tokens, from vLLM's prompt log-probs)
and times greedy generation of 128 tokens at concurrency 1 and 8. The bar: each variant's dev loss within 0.01 of
bf16's. With --track, each variant is an MLflow run (experiment `tqa-quantized`) with its loss, delta and latency.

    python bench/quantized_gpu.py --dataset .tqa/dataset [--variants bf16,fp8,awq,gptq] [--adapter DIR] [--track]

Without a CUDA device and vLLM it says so in one sentence and exits with status 2: no numbers are made up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOSS_BAR = 0.01


def gpu_missing() -> str | None:
    """Why this machine cannot run the measurement, or None."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed, and the quantized variants are served by vLLM on a CUDA GPU."
    import torch

    if not torch.cuda.is_available():
        return "This machine has no CUDA GPU, so the quantized variants cannot be measured here."
    return None


def dev_examples(dataset: Path, n: int) -> list[Any]:
    from ml.train.generator_data import load_splits, rag_examples

    _, _, eval_pairs = load_splits(dataset)
    return rag_examples(eval_pairs, sources=5, refusal_share=0.0)[:n]


def measure(variant: Any, examples: list[Any], adapter: str | None, prompts_for_latency: int) -> dict[str, float]:
    """Dev loss over the answers and latency of 128-token greedy generations, in one vLLM engine."""
    from vllm import LLM, SamplingParams

    lora = None
    llm = LLM(
        model=variant.model,
        dtype=variant.dtype,
        quantization=None if variant.quantization == "none" else variant.quantization,
        enable_lora=adapter is not None,
        max_model_len=8192,
    )
    if adapter is not None:
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("tqa-adapter", 1, adapter)
    tok = llm.get_tokenizer()
    texts, answer_lengths = [], []
    for ex in examples:
        prompt = tok.apply_chat_template(ex.messages, add_generation_prompt=True, tokenize=False)
        answer = ex.answer + tok.eos_token
        texts.append(prompt + answer)
        answer_lengths.append(len(tok(answer, add_special_tokens=False)["input_ids"]))
    outs = llm.generate(texts, SamplingParams(max_tokens=1, prompt_logprobs=0), lora_request=lora)
    total, count = 0.0, 0
    for out, n in zip(outs, answer_lengths, strict=True):
        ids = out.prompt_token_ids[-n:]
        for token_id, logprobs in zip(ids, out.prompt_logprobs[-n:], strict=True):
            total -= logprobs[token_id].logprob
            count += 1
    prompts = [tok.apply_chat_template(ex.messages, add_generation_prompt=True, tokenize=False) for ex in examples]
    greedy = SamplingParams(max_tokens=128, temperature=0.0, ignore_eos=True)
    single = []
    for prompt in prompts[: min(5, len(prompts))]:
        started = time.perf_counter()
        llm.generate([prompt], greedy, lora_request=lora, use_tqdm=False)
        single.append(time.perf_counter() - started)
    batch = prompts[:prompts_for_latency]
    started = time.perf_counter()
    llm.generate(batch, greedy, lora_request=lora, use_tqdm=False)
    batch_s = time.perf_counter() - started
    import torch

    return {
        "dev_loss": total / max(count, 1),
        "answer_tokens": count,
        "latency_128_tokens_s_p50": statistics.median(single),
        "batch_tokens_per_s": len(batch) * 128 / batch_s,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / ".tqa" / "dataset")
    parser.add_argument("--variants", default="bf16,fp8,awq,gptq")
    parser.add_argument("--adapter", default=None, help="LoRA adapter directory applied to every variant.")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--track", action="store_true", help="Log each variant as an MLflow run.")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    reason = gpu_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    from serving.quantized import load_variant

    examples = dev_examples(args.dataset, args.examples)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if names[0] != "bf16":
        names = ["bf16", *[n for n in names if n != "bf16"]]
    if args.one:
        print(json.dumps(measure(load_variant(args.one), examples, args.adapter, args.batch)), flush=True)
        return 0
    results: dict[str, dict[str, float]] = {}
    for name in names:
        # One process per variant: a vLLM engine does not give its GPU memory back within a process.
        child = subprocess.run(
            [sys.executable, __file__, "--one", name, *sys.argv[1:]], capture_output=True, text=True, check=False
        )
        if child.returncode != 0:
            print(f"{name} failed:\n{child.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
        results[name]["loss_delta_vs_bf16"] = results[name]["dev_loss"] - results["bf16"]["dev_loss"]
        results[name]["within_bar"] = float(results[name]["loss_delta_vs_bf16"] <= LOSS_BAR)
        print(json.dumps({"variant": name, "model": load_variant(name).model, **results[name]}), flush=True)
    if args.track:
        from ml.settings import Settings
        from ml.tracking.log import connect

        mlflow = connect(Settings().model_copy(update={"mlflow_experiment": "tqa-quantized"}))
        for name, numbers in results.items():
            with mlflow.start_run(run_name=f"serving-{name}"):
                mlflow.log_params({"variant": name, **load_variant(name).model_dump(), "adapter": args.adapter or "-"})
                mlflow.log_metrics(numbers)
                mlflow.set_tags({"tqa.kind": "quantized-variant", "tqa.within_bar": str(bool(numbers["within_bar"]))})
    return 0 if all(r["within_bar"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
