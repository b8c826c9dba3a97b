"""Qwen runner benchmark: TTFT and output tokens/s at concurrency 1 and 8, beside the memory-bandwidth floor.

On a GPU it serves a randomly initialised model with Qwen2.5-14B-Instruct's exact architecture in bf16 (no
checkpoint needed: the runner builds random weights from the config, or vLLM uses dummy weights), through the real
runner (`bentoml serve`), with 1,500-token prompts and 128 output tokens (EOS ignored). `--tiny` runs the same
logic on CPU with the tiny test model, to check the script where no GPU is available.

    python bench/qwen14b_gpu.py            # GPU, 14B config
    python bench/qwen14b_gpu.py --tiny     # CPU, tiny config
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Published HBM bandwidth (GB/s) and dense bf16 peak (TFLOP/s) by device name.
GPUS = {
    "H200": (4800, 989),
    "H100 PCIe": (2000, 756),
    "H100 NVL": (3900, 835),
    "H100": (3350, 989),
    "A100-SXM4-80GB": (2039, 312),
    "A100 80GB PCIe": (1935, 312),
    "A100": (1555, 312),
    "L40S": (864, 362),
}


def param_count(cfg: dict[str, Any]) -> int:
    """Parameters of a Qwen2 decoder from its config (q/k/v biases included, as in Qwen2)."""
    h, inter, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    head = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * head
    attn = h * h + h + 2 * (h * kv + kv) + h * h
    mlp = 3 * h * inter
    per_layer = attn + mlp + 2 * h
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    return layers * per_layer + embed + h


def floors(
    cfg: dict[str, Any], prompt: int, out: int, concurrency: int, gbps: float, tflops: float
) -> dict[str, float]:
    """Lower bounds: a decode step reads every weight (and the batch's KV cache) once; prefill is compute-bound."""
    n = param_count(cfg)
    weight_bytes = 2 * n
    head = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv_per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head * 2
    kv_bytes = concurrency * (prompt + out / 2) * kv_per_token
    step_s = (weight_bytes + kv_bytes) / (gbps * 1e9)
    prefill_s = 2 * n * prompt * concurrency / (tflops * 1e12)
    return {
        "params": n,
        "weight_gb": weight_bytes / 1e9,
        "decode_step_floor_ms": step_s * 1000,
        "per_stream_tokens_per_s_ceiling": 1 / step_s,
        "aggregate_tokens_per_s_ceiling": concurrency / step_s,
        "ttft_floor_ms": prefill_s * 1000,  # the `concurrency` prompts arrive together and are prefilled together
        "answer_floor_s": prefill_s + out * step_s,
    }


def build_model_dir(out: Path, tiny: bool) -> dict[str, Any]:
    from tests.support.tiny_qwen import QWEN25_14B, build_tiny_model

    overrides = {} if tiny else dict(QWEN25_14B)
    build_tiny_model(out, weights=False, **overrides)
    return json.loads((out / "config.json").read_text())


def prompts(model_dir: Path, n: int, tokens: int) -> list[str]:
    """`n` distinct user messages whose chat-templated prompt is `tokens` tokens long."""
    from transformers import AutoTokenizer

    from tests.support.tiny_qwen import training_text

    tok = AutoTokenizer.from_pretrained(model_dir)
    corpus = "\n".join(training_text())
    ids = tok(corpus)["input_ids"]
    overhead = len(tok.apply_chat_template([{"role": "user", "content": ""}], add_generation_prompt=True)) + 8
    out = []
    for i in range(n):
        start = (i * 997) % max(1, len(ids) - tokens)
        body = tok.decode(ids[start : start + tokens - overhead])
        out.append(f"Request {i}. {body}")
    return out


async def one(client: Any, url: str, content: str, out_tokens: int) -> dict[str, float]:
    body = {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": out_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = last = None
    usage: dict[str, int] = {}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    assert first is not None and last is not None, "no tokens streamed"
    n = usage.get("completion_tokens", out_tokens)
    return {
        "ttft_s": first - t0,
        "total_s": last - t0,
        "tokens": n,
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "decode_tps": (n - 1) / (last - first) if last > first else float("nan"),
    }


async def level(url: str, texts: list[str], concurrency: int, rounds: int, out_tokens: int) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:
        await one(client, url, texts[0], 8)  # warm-up
        results: list[dict[str, float]] = []
        t0 = time.perf_counter()
        for r in range(rounds):
            batch = texts[r * concurrency : (r + 1) * concurrency]
            results += await asyncio.gather(*(one(client, url, t, out_tokens) for t in batch))
        wall = time.perf_counter() - t0
    ttft = sorted(x["ttft_s"] for x in results)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "prompt_tokens": results[0]["prompt_tokens"],
        "ttft_p50_s": statistics.median(ttft),
        "ttft_p95_s": ttft[min(len(ttft) - 1, round(0.95 * (len(ttft) - 1)))],
        "per_stream_decode_tokens_per_s": statistics.median(x["decode_tps"] for x in results),
        "aggregate_output_tokens_per_s": sum(x["tokens"] for x in results) / wall,
        "answer_latency_p50_s": statistics.median(x["total_s"] for x in results),
    }


def device_info(tiny: bool) -> tuple[str, float, float]:
    import torch

    if not torch.cuda.is_available():
        if not tiny:
            raise SystemExit("No CUDA device: run with --tiny to check the script on CPU.")
        return "cpu", float("nan"), float("nan")
    name = torch.cuda.get_device_name(0)
    for key, (gbps, tflops) in GPUS.items():
        if key in name:
            return name, gbps, tflops
    return name, float("nan"), float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny config on CPU (checks the script without a GPU)")
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--hbm-gbps", type=float, help="override the device's memory bandwidth (GB/s)")
    parser.add_argument("--engine", choices=["auto", "transformers", "vllm"], default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "qwen_runner.json")
    args = parser.parse_args()

    from tests.support.qwen_runner import start_runner, stop_runner

    device, gbps, tflops = device_info(args.tiny)
    gbps = args.hbm_gbps or gbps
    with tempfile.TemporaryDirectory(prefix="tqa-bench-") as tmp:
        model_dir = Path(tmp) / "model"
        cfg = build_model_dir(model_dir, args.tiny)
        texts = prompts(model_dir, max(args.concurrency) * args.rounds, args.prompt_tokens)
        env = {
            "TQA_RUNNER_RANDOM_WEIGHTS": "true",
            "TQA_RUNNER_ENGINE": args.engine,
            "TQA_RUNNER_MAX_BATCH_SIZE": str(max(args.concurrency)),
            "TQA_RUNNER_MAX_INPUT_TOKENS": str(args.prompt_tokens + 64),
            "TQA_RUNNER_BATCH_WAIT_MS": "20",
        }
        if args.tiny:
            env["TQA_RUNNER_TORCH_THREADS"] = "1"
        home = Path(tmp) / "bentoml"
        home.mkdir()
        proc, url = start_runner(model_dir, home, env, timeout_s=900)
        try:
            levels = [
                asyncio.run(level(url, texts, c, args.rounds, args.output_tokens))
                | {"floor": floors(cfg, args.prompt_tokens, args.output_tokens, c, gbps, tflops)}
                for c in args.concurrency
            ]
        finally:
            stop_runner(proc, timeout_s=60)
    report = {
        "device": device,
        "hbm_gbps": gbps,
        "config": "tiny" if args.tiny else "Qwen2.5-14B-Instruct (random weights, bf16)",
        "prompt_tokens": args.prompt_tokens,
        "output_tokens": args.output_tokens,
        "levels": levels,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for lv in levels:
        f = lv["floor"]
        print(
            f"c={lv['concurrency']}: TTFT p50 {lv['ttft_p50_s'] * 1000:.0f} ms, p95 {lv['ttft_p95_s'] * 1000:.0f} ms; "
            f"decode {lv['per_stream_decode_tokens_per_s']:.1f} tok/s per stream, "
            f"{lv['aggregate_output_tokens_per_s']:.1f} tok/s total; answer p50 {lv['answer_latency_p50_s']:.2f} s | "
            f"floor: {f['decode_step_floor_ms']:.2f} ms/step ({f['per_stream_tokens_per_s_ceiling']:.0f} tok/s per "
            f"stream), weights {f['weight_gb']:.1f} GB, answer >= {f['answer_floor_s']:.2f} s"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
