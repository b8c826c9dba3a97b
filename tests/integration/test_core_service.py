"""The BentoML RAG service, started for real with `tqa serve` and called over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.helpers import free_port
from tests.integration.conftest import Indexed

pytestmark = pytest.mark.integration


@contextmanager
def run_service(indexed: Indexed, **extra_env: str) -> Iterator[str]:
    """`tqa serve` on a free port over the session's index; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    env.update(
        TQA_DATA_DIR=str(indexed.settings.data_dir),
        TQA_WEAVIATE_PORT=str(indexed.settings.weaviate_port),
        TQA_WEAVIATE_GRPC_PORT=str(indexed.settings.weaviate_grpc_port),
        BENTOML_DO_NOT_TRACK="true",
        **extra_env,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "tqa serve exited"
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("tqa serve did not become ready within 180 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture(scope="module")
def service(indexed: Indexed) -> Iterator[str]:
    with run_service(indexed) as url:
        yield url


def test_health_and_readiness(service: str) -> None:
    assert httpx.get(f"{service}/healthz").status_code == 200
    assert httpx.get(f"{service}/readyz").status_code == 200


def test_ask_returns_a_cited_answer(service: str) -> None:
    response = httpx.post(f"{service}/ask", json={"question": "How is RMS normalization implemented in Llama?"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"answer", "confidence", "abstained", "sources", "timings_ms"}
    assert not body["abstained"] and "[1]" in body["answer"]
    source = body["sources"][0]
    assert set(source) >= {"n", "kind", "path", "start_line", "end_line", "symbol", "url", "commit", "issue", "pr"}
    assert any(s["symbol"] == "LlamaRMSNorm" for s in body["sources"])


def test_out_of_scope_question_abstains(service: str) -> None:
    body = httpx.post(f"{service}/ask", json={"question": "What is a good recipe for lasagna?"}).json()
    assert body["abstained"] and body["sources"] == []


def test_search_with_filters(service: str) -> None:
    body = httpx.post(f"{service}/search", json={"query": "top-p nucleus sampling", "k": 3, "kind": ["class"]}).json()
    assert len(body["results"]) == 3
    assert all(r["kind"] == "class" for r in body["results"])
    assert "TopPLogitsWarper" in [r["symbol"] for r in body["results"]]


def test_bad_requests_get_clear_4xx(service: str) -> None:
    empty = httpx.post(f"{service}/ask", json={"question": "   "})
    assert empty.status_code == 400 and "empty" in empty.text
    huge = httpx.post(f"{service}/ask", json={"question": "why " * 2000})
    assert huge.status_code == 413 and "4096 bytes" in huge.text
    too_many = httpx.post(f"{service}/search", json={"query": "cache", "k": 10_000})
    assert too_many.status_code in (400, 422)


def test_metrics_expose_answer_latency(service: str) -> None:
    httpx.post(f"{service}/ask", json={"question": "What loss is used for causal language modeling?"})
    metrics = httpx.get(f"{service}/metrics").text
    assert "tqa_ask_seconds" in metrics


def test_cli_uses_the_running_server(service: str, indexed: Indexed) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    env.update(TQA_DATA_DIR=str(indexed.settings.data_dir), TQA_WEAVIATE_PORT=str(free_port()))
    # The Weaviate port points nowhere: an answer can only come from the server recorded in the data dir.
    out = subprocess.run(
        [sys.executable, "-m", "ops.cli", "ask", "--json", "How does the Mixtral router select experts?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert not body["abstained"]
    assert any("mixtral" in s["path"] for s in body["sources"])


def test_llm_runner_down_still_answers_extractively_and_says_so(indexed: Indexed) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with run_service(indexed, TQA_ANSWERER="llm", TQA_LLM_URL=dead) as url:
        body = httpx.post(f"{url}/ask", json={"question": "How is RMS normalization implemented in Llama?"}).json()
    assert not body["abstained"] and "[1]" in body["answer"]
    assert body["answerer"] == "extractive"
    assert body["fallback"]
