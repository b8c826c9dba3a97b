"""The real Qwen runner (`bentoml serve`) on a tiny random Qwen2 built here: loading, generation, HTTP, streaming."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.prometheus import sample, scrape
from tests.support.qwen_runner import start_runner, stop_runner
from tests.support.tiny_qwen import build_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MAX_BATCH, MAX_QUEUE, MAX_TOKENS, MAX_INPUT = 8, 2, 4096, 512
MESSAGES = [{"role": "user", "content": "Why is use_cache turned off under gradient checkpointing?"}]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def runner(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_runner(
        tiny_model,
        tmp_path_factory.mktemp("bentoml-home"),
        {
            "TQA_RUNNER_TORCH_THREADS": "1",
            "TQA_RUNNER_SERVED_MODEL_NAME": "tiny-qwen",
            "TQA_RUNNER_MAX_BATCH_SIZE": str(MAX_BATCH),
            "TQA_RUNNER_MAX_QUEUE": str(MAX_QUEUE),
            "TQA_RUNNER_MAX_TOKENS_LIMIT": str(MAX_TOKENS),
            "TQA_RUNNER_MAX_INPUT_TOKENS": str(MAX_INPUT),
            "TQA_RUNNER_BATCH_WAIT_MS": "50",
        },
    )
    yield url
    stop_runner(proc)


def test_health_and_model_list(runner: str) -> None:
    assert httpx.get(f"{runner}/healthz").status_code == 200
    assert httpx.get(f"{runner}/readyz").status_code == 200
    models = httpx.get(f"{runner}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny-qwen"]


def test_non_streaming_completion(runner: str) -> None:
    body = {"model": "tiny-qwen", "messages": MESSAGES, "max_tokens": 16, "ignore_eos": True}
    resp = httpx.post(f"{runner}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["role"] == "assistant"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 16 and data["usage"]["prompt_tokens"] > 10
    assert isinstance(data["choices"][0]["message"]["content"], str)


async def _stream(client: httpx.AsyncClient, url: str, max_tokens: int) -> dict:
    body = {
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
    }
    chunks, done = [], False
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunks.append(json.loads(line.removeprefix("data: ")))
    return {"chunks": chunks, "done": done}


def test_eight_concurrent_streams_complete(runner: str) -> None:
    async def run() -> list[dict]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(_stream(client, runner, 24 + i) for i in range(8)))

    results = asyncio.run(run())
    for i, result in enumerate(results):
        chunks = result["chunks"]
        assert result["done"]
        assert "error" not in json.dumps(chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finish[-1] in {"stop", "length"} and finish.count(None) == len(finish) - 1
        usage = chunks[-1]["usage"]
        assert 1 <= usage["completion_tokens"] <= 24 + i
        if finish[-1] == "length":
            assert usage["completion_tokens"] == 24 + i


def test_max_tokens_over_the_bound_is_refused(runner: str) -> None:
    body = {"messages": MESSAGES, "max_tokens": MAX_TOKENS + 1}
    resp = httpx.post(f"{runner}/v1/chat/completions", json=body)
    assert resp.status_code == 400
    assert str(MAX_TOKENS) in resp.json()["error"]["message"]


def test_input_over_the_bound_is_refused(runner: str) -> None:
    body = {"messages": [{"role": "user", "content": "gradient checkpointing " * 500}], "max_tokens": 4}
    resp = httpx.post(f"{runner}/v1/chat/completions", json=body)
    assert resp.status_code == 400
    assert str(MAX_INPUT) in resp.json()["error"]["message"]


def test_malformed_request_is_a_400_with_an_error_object(runner: str) -> None:
    resp = httpx.post(f"{runner}/v1/chat/completions", json={"messages": []})
    assert resp.status_code == 400 and "messages" in resp.json()["error"]["message"]


def test_metrics_count_exactly_the_requests_sent(runner: str) -> None:
    before = scrape(runner)
    body = {"messages": MESSAGES, "max_tokens": 5, "ignore_eos": True}
    usages = []
    for _ in range(2):
        resp = httpx.post(f"{runner}/v1/chat/completions", json=body, timeout=60)
        assert resp.status_code == 200
        usages.append(resp.json()["usage"])
    refused = httpx.post(f"{runner}/v1/chat/completions", json={**body, "max_tokens": MAX_TOKENS + 1})
    assert refused.status_code == 400
    after = scrape(runner)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert [u["completion_tokens"] for u in usages] == [5, 5]
    assert moved("tqa_runner_output_tokens_total") == 10
    assert moved("tqa_runner_prompt_tokens_total") == sum(u["prompt_tokens"] for u in usages)
    # One observation per answered request; the refused one was never generated.
    assert moved("tqa_runner_time_to_first_token_seconds_count") == 2
    assert moved("tqa_runner_decode_tokens_per_second_count") == 2
    assert moved("tqa_runner_request_seconds_count") == 2
    assert moved("tqa_runner_rejected_requests_total", reason="max_tokens") == 1
    assert moved("tqa_runner_rejected_requests_total", reason="input_length") == 0


def test_requests_beyond_the_queue_get_503_with_retry_after(runner: str) -> None:
    # Runs last in this module: it fills every batch slot and the queue with long generations, then releases them.
    async def run() -> tuple[int, dict[str, str]]:
        body = {"messages": MESSAGES, "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": True}
        async with httpx.AsyncClient(timeout=60) as client:
            held = []
            for _ in range(MAX_BATCH + MAX_QUEUE):
                ctx = client.stream("POST", f"{runner}/v1/chat/completions", json=body)
                resp = await ctx.__aenter__()
                assert resp.status_code == 200
                held.append(ctx)
            extra = await client.post(f"{runner}/v1/chat/completions", json={**body, "stream": False})
            for ctx in held:
                await ctx.__aexit__(None, None, None)
            return extra.status_code, dict(extra.headers)

    before = scrape(runner)
    status, headers = asyncio.run(run())
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    full = sample(scrape(runner), "tqa_runner_rejected_requests_total", reason="queue_full")
    assert full - sample(before, "tqa_runner_rejected_requests_total", reason="queue_full") == 1


def test_runner_bento_builds_offline_without_cuda_wheels(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "bentoml", "build", "-f", "serving/bentofile.runner.yaml", "."]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (requirements,) = tmp_path.glob("bentos/tqa-qwen-runner/*/env/python/requirements.txt")
    pins = requirements.read_text().split()
    assert "torch==2.15.0" in pins and "transformers==5.24.0" in pins
    assert not any(p.startswith(("nvidia-", "cuda-", "vllm")) for p in pins)
    (src,) = tmp_path.glob("bentos/tqa-qwen-runner/*/src")
    assert (src / "serving" / "qwen_runner.py").exists() and not (src / "tests").exists()
