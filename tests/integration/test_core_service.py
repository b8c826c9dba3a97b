"""The BentoML RAG service, started for real with `tqa serve` and called over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Indexed
from tests.support.ports import free_port
from tests.support.prometheus import sample, scrape
from tests.support.serve import start_service

pytestmark = pytest.mark.integration


def error_of(response: httpx.Response) -> str:
    """The message of an error response, `{"error": "..."}`."""
    body = response.json()
    # BentoML 1.4 wraps a 4xx error object in a list: https://github.com/bentoml/BentoML/issues/4232
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return body["error"]


@contextmanager
def run_service(indexed: Indexed, log_dir: Path, **extra_env: str) -> Iterator[str]:
    """`tqa serve` on a free port over the session's index; yields its base URL. Its output goes to `log_dir`."""
    served = start_service(indexed.settings, log_dir, **extra_env)
    try:
        yield served.url
    finally:
        served.stop()


@pytest.fixture(scope="module")
def service(indexed: Indexed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_service(indexed, tmp_path_factory.mktemp("serve")) as url:
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


def test_bad_requests_get_the_status_and_sentence_the_readme_promises(service: str) -> None:
    # README: an empty question is a 400, a question over 4 KB a 413, `k` outside 1..50 a 400; each with a
    # one-sentence message.
    empty = httpx.post(f"{service}/ask", json={"question": "   "})
    assert (empty.status_code, error_of(empty)) == (
        400,
        "The question is empty; ask something about the Transformers repository.",
    )
    huge = httpx.post(f"{service}/ask", json={"question": "why " * 2000})
    assert (huge.status_code, error_of(huge)) == (
        413,
        "The question is longer than 4096 bytes; shorten it to the essential part.",
    )
    for route, body in (("search", {"query": "cache"}), ("ask", {"question": "What does use_cache do?"})):
        for k in (0, 51, 10_000):
            response = httpx.post(f"{service}/{route}", json={**body, "k": k})
            assert (response.status_code, error_of(response)) == (400, "k must be between 1 and 50."), (route, k)


def test_metrics_count_exactly_the_questions_answered(service: str) -> None:
    before = scrape(service)
    answered = [
        httpx.post(f"{service}/ask", json={"question": q}, timeout=60).json()
        for q in ("How is RMS normalization implemented in Llama?", "What is a good recipe for lasagna?")
    ]
    refused = httpx.post(f"{service}/ask", json={"question": ""})
    after = scrape(service)

    assert [a["abstained"] for a in answered] == [False, True] and refused.status_code == 400
    # Both answers are timed, the abstention is counted, the refused request is neither.
    assert sample(after, "tqa_ask_seconds_count") - sample(before, "tqa_ask_seconds_count") == 2
    assert sample(after, "tqa_abstentions_total") - sample(before, "tqa_abstentions_total") == 1


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


def test_llm_runner_down_still_answers_extractively_and_says_so(indexed: Indexed, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with run_service(indexed, tmp_path, TQA_ANSWERER="llm", TQA_LLM_URL=dead) as url:
        body = httpx.post(f"{url}/ask", json={"question": "How is RMS normalization implemented in Llama?"}).json()
    assert not body["abstained"] and "[1]" in body["answer"]
    assert body["answerer"] == "extractive"
    assert body["fallback"]
