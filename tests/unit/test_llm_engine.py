"""The batching transformers engine on a tiny random Qwen2: real loading, per-row limits, admission bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ml.llm.engine import InputTooLong, QueueFull, RequestStats, SamplingParams, TransformersEngine
from ml.llm.generate import load_model
from tests.support.tiny_qwen import build_tiny_model

MESSAGES = [{"role": "user", "content": "How is use_cache handled under gradient checkpointing?"}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture
def engine(tiny_dir: Path):
    import torch

    torch.set_num_threads(1)
    loaded = load_model(str(tiny_dir), device="cpu")
    eng = TransformersEngine(
        loaded.model, loaded.tokenizer, model_name="tiny", max_input_tokens=512, max_batch_size=4, max_queue=2
    )
    yield eng
    eng.close()


def test_tiny_model_is_a_qwen2_with_a_chat_template(tiny_dir: Path) -> None:
    loaded = load_model(str(tiny_dir), device="cpu")
    assert type(loaded.model).__name__ == "Qwen2ForCausalLM"
    assert loaded.dtype == "float32"
    text = loaded.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")


async def _collect(engine: TransformersEngine, params: SamplingParams) -> tuple[str, str | None, RequestStats]:
    stats = RequestStats()
    events = await engine.stream(MESSAGES, params, stats)
    text, reason = "", None
    async for event in events:
        text += event.text
        reason = event.finish_reason
    return text, reason, stats


async def _collect_concurrently(
    engine: TransformersEngine, limits: list[int]
) -> list[tuple[str, str | None, RequestStats]]:
    return await asyncio.gather(
        *(_collect(engine, SamplingParams(max_tokens=n, temperature=0.8, ignore_eos=True)) for n in limits)
    )


def test_concurrent_requests_share_a_batch_and_keep_their_own_limits(engine: TransformersEngine) -> None:
    results = asyncio.run(_collect_concurrently(engine, [3, 7, 12]))
    assert [stats.completion_tokens for _, _, stats in results] == [3, 7, 12]
    assert all(reason == "length" for _, reason, _ in results)
    assert all(stats.ttft_s is not None and stats.prompt_tokens > 10 for _, _, stats in results)


def test_greedy_decoding_is_deterministic(engine: TransformersEngine) -> None:
    params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    first = asyncio.run(_collect(engine, params))[0]
    second = asyncio.run(_collect(engine, params))[0]
    assert first == second and first


def test_prompt_over_the_input_bound_is_refused(engine: TransformersEngine) -> None:
    long = [{"role": "user", "content": "gradient checkpointing " * 400}]

    async def run() -> None:
        await engine.stream(long, SamplingParams(max_tokens=4), RequestStats())

    with pytest.raises(InputTooLong):
        asyncio.run(run())


def test_admission_beyond_batch_and_queue_raises_queue_full(engine: TransformersEngine) -> None:
    async def run() -> int:
        streams = []
        params = SamplingParams(max_tokens=2000, ignore_eos=True)
        for _ in range(engine.max_batch_size + engine.max_queue):
            streams.append(await engine.stream(MESSAGES, params, RequestStats()))
        try:
            await engine.stream(MESSAGES, params, RequestStats())
        except QueueFull:
            refused = 1
        else:
            refused = 0
        for s in streams:
            await s.aclose()
        return refused

    assert asyncio.run(run()) == 1


@pytest.mark.gpu
def test_engine_generates_on_cuda_in_bf16(tiny_dir: Path) -> None:
    loaded = load_model(str(tiny_dir), device="cuda")
    assert loaded.device.startswith("cuda") and loaded.dtype == "bfloat16"
    eng = TransformersEngine(
        loaded.model, loaded.tokenizer, model_name="tiny", max_input_tokens=512, max_batch_size=4, max_queue=2
    )
    try:
        results = asyncio.run(_collect_concurrently(eng, [3, 7, 12]))
        greedy = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
        first, second = (asyncio.run(_collect(eng, greedy)) for _ in range(2))
    finally:
        eng.close()
    assert [stats.completion_tokens for _, _, stats in results] == [3, 7, 12]
    assert all(reason == "length" and stats.ttft_s is not None for _, reason, stats in results)
    assert first[:2] == second[:2] and first[2].completion_tokens == 8
