"""The real Qwen runner (`bentoml serve`) on a tiny random Qwen2 built here: loading, generation, HTTP, streaming."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml.llm.tiny import build_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MAX_BATCH, MAX_QUEUE, MAX_TOKENS, MAX_INPUT = 8, 2, 4096, 512
MESSAGES = [{"role": "user", "content": "Why is use_cache turned off under gradient checkpointing?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_runner(model_dir: Path, home: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """`bentoml serve` the runner on a free 127.0.0.1 port; returns once /readyz answers 200."""
    port = free_port()
    full_env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(home),
        "TQA_RUNNER_MODEL": str(model_dir),
        "TQA_RUNNER_TORCH_THREADS": "1",
        **env,
    }
    log = (home / f"runner-{port}.log").open("w")
    cmd = [sys.executable, "-m", "bentoml", "serve", "serving.qwen_runner:QwenRunner"]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runner exited: {(home / f'runner-{port}.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_runner(proc)
    raise RuntimeError("runner did not become ready in 120 s")


def stop_runner(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def runner(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_runner(
        tiny_model,
        tmp_path_factory.mktemp("bentoml-home"),
        TQA_RUNNER_SERVED_MODEL_NAME="tiny-qwen",
        TQA_RUNNER_MAX_BATCH_SIZE=str(MAX_BATCH),
        TQA_RUNNER_MAX_QUEUE=str(MAX_QUEUE),
        TQA_RUNNER_MAX_TOKENS_LIMIT=str(MAX_TOKENS),
        TQA_RUNNER_MAX_INPUT_TOKENS=str(MAX_INPUT),
        TQA_RUNNER_BATCH_WAIT_MS="50",
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


def test_metrics_report_ttft_and_tokens(runner: str) -> None:
    text = httpx.get(f"{runner}/metrics").text
    assert "tqa_runner_time_to_first_token_seconds_count" in text
    assert "tqa_runner_decode_tokens_per_second_bucket" in text
    output = [line for line in text.splitlines() if line.startswith("tqa_runner_output_tokens_total")]
    assert output and float(output[0].split()[-1]) >= 16
    assert 'tqa_runner_rejected_requests_total{reason="max_tokens"}' in text


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

    status, headers = asyncio.run(run())
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    text = httpx.get(f"{runner}/metrics").text
    assert 'tqa_runner_rejected_requests_total{reason="queue_full"} 1.0' in text


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
