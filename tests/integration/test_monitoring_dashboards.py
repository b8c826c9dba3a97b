"""The canary, runner and Weaviate dashboards, and the answer-check metrics, against real scraped processes.

Two `tqa serve` slots run registered versions side by side: production (extractive) and a canary whose answerer is
the real Qwen runner with the tiny random-weight model (its text never passes citation verification, so every answer
is checked, loses its sentences and falls back). A real Weaviate node with Prometheus monitoring on takes writes and
searches. One real Prometheus scrapes all of them under the monitoring role's job names, loads the alert rules, and
every panel of the dashboards must return data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ml.tracking.server import MlflowServer
from tests.integration.conftest import Indexed
from tests.support.ports import free_port
from tests.support.prometheus import sample, scrape
from tests.support.prometheus_server import Prometheus
from tests.support.qwen_runner import start_runner, stop_runner
from tests.support.release import register_version
from tests.support.serve import Served, start_service
from tests.support.tiny_qwen import build_tiny_model
from tests.support.weaviate_cluster import WeaviateCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MONITORING = Path(__file__).resolve().parents[2] / "ops" / "monitoring"
# tqa-people.json is checked against the service alone in test_web_page.py.
DASHBOARDS = ["tqa-canary.json", "tqa-runner.json", "tqa-weaviate.json"]
MODEL = "tqa-dashboards-test"
QUESTIONS = ["How is RMS normalization implemented in Llama?", "How do stopping criteria end generation?"]


@dataclass
class Stack:
    production: Served
    canary: Served
    runner: str
    weaviate: WeaviateCluster
    weaviate_metrics: str


@pytest.fixture(scope="module")
def stack(indexed: Indexed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("dashboards")
    started: list[object] = []
    try:
        runner_proc, runner_url = start_runner(
            build_tiny_model(base / "tiny-qwen"),
            base,
            {
                "TQA_RUNNER_TORCH_THREADS": "1",
                "TQA_RUNNER_DEFAULT_MAX_TOKENS": "24",
                "TQA_RUNNER_MAX_TOKENS_LIMIT": "64",
            },
        )
        started.append(runner_proc)
        weaviate = WeaviateCluster(base / "weaviate", size=1)
        metrics_port = free_port()
        weaviate.nodes[0].env |= {
            "PROMETHEUS_MONITORING_ENABLED": "true",
            "PROMETHEUS_MONITORING_PORT": str(metrics_port),
        }
        weaviate.start()
        started.append(weaviate)
        mlflow_server = MlflowServer(base / "mlflow", port=free_port()).start()
        started.append(mlflow_server)
        settings = indexed.settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.uri})
        production = register_version(settings, MODEL, base / "v1", abstain_threshold=0.0)
        canary = register_version(
            settings, MODEL, base / "v2", abstain_threshold=0.0, answerer="llm", llm_model="tiny", llm_max_tokens=24
        )
        common = {
            # Each slot has a data dir (and metrics directory) of its own and reads the one index, as releases do.
            "TQA_WEAVIATE_URL": f"http://127.0.0.1:{settings.weaviate_port}",
            "TQA_WEAVIATE_GRPC_URL": f"http://127.0.0.1:{settings.weaviate_grpc_port}",
            "TQA_MLFLOW_TRACKING_URI": mlflow_server.uri,
            "TQA_REGISTERED_MODEL": MODEL,
            "TQA_LLM_URL": f"{runner_url}/v1",
            "TQA_LLM_TIMEOUT_S": "60",
        }
        served = {}
        for alias, version in (("production", production), ("canary", canary)):
            slot = settings.model_copy(update={"data_dir": base / alias})
            slot.data_dir.mkdir()
            served[alias] = start_service(
                slot, base, **common, TQA_MODEL_VERSION=version, TQA_MODEL_ALIAS=alias, timeout_s=300
            )
            started.append(served[alias])
        yield Stack(served["production"], served["canary"], runner_url, weaviate, f"127.0.0.1:{metrics_port}")
    finally:
        for thing in reversed(started):
            if isinstance(thing, Served | WeaviateCluster | MlflowServer):
                thing.stop()
            else:
                stop_runner(thing)  # type: ignore[arg-type]


def _ask(url: str, question: str) -> dict:
    response = httpx.post(f"{url}/ask", json={"question": question, "k": 3}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_answer_checks_are_counted_on_the_service_s_metrics(stack: Stack) -> None:
    """The canary's LLM answers fail verification: each is counted as checked and as a fallback."""
    before = scrape(stack.canary.url)
    answers = [_ask(stack.canary.url, q) for q in QUESTIONS]
    after = scrape(stack.canary.url)
    unverified = [a for a in answers if a["fallback"] and "citation verification" in a["fallback"]]
    assert unverified, [a["fallback"] for a in answers]
    # The tiny model writes only newlines: no sentence to drop (tests/unit/test_answer_metrics.py drops some).
    dropped = sum(len(a["verification"]["dropped"]) for a in unverified)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("tqa_answer_fallbacks_total", reason="unverified") == len(unverified)
    assert moved("tqa_answer_checks_total", outcome="fell_back") == len(unverified)
    assert moved("tqa_answer_dropped_sentences_total") == dropped
    # The extractive production slot runs no checks: nothing of the kind is counted there.
    _ask(stack.production.url, QUESTIONS[0])
    production = scrape(stack.production.url)
    assert "tqa_answer_fallbacks_total" not in production and "tqa_answer_checks_total" not in production


def _weaviate_traffic(cluster: WeaviateCluster, rounds: int) -> None:
    from weaviate.classes.config import Configure, DataType, Property
    from weaviate.classes.data import DataObject

    client = cluster.client()
    try:
        if not client.collections.exists("Probe"):
            client.collections.create(
                "Probe",
                properties=[Property(name="text", data_type=DataType.TEXT)],
                vector_config=Configure.Vectors.self_provided(),
            )
        probe = client.collections.get("Probe")
        for r in range(rounds):
            probe.data.insert_many(
                [DataObject(properties={"text": f"rms norm {r} {i}"}, vector=[0.1 * i, 0.2, r]) for i in range(10)]
            )
            probe.query.near_vector([0.1, 0.2, 0.3], limit=3)
            probe.query.bm25("norm", limit=3)
    finally:
        client.close()


def test_every_dashboard_query_returns_data_from_a_real_prometheus(stack: Stack, tmp_path: Path) -> None:
    rules = sorted(p for p in (MONITORING / "rules").glob("*.yml") if not p.name.endswith(".test.yml"))
    prom = Prometheus(
        tmp_path,
        [stack.production.url.removeprefix("http://"), stack.canary.url.removeprefix("http://")],
        rules,
        jobs={"tqa-runner": [stack.runner.removeprefix("http://")], "weaviate": [stack.weaviate_metrics]},
    ).start()
    try:
        exprs = [
            (name, panel["title"], target["expr"])
            for name in DASHBOARDS
            for panel in json.loads((MONITORING / "dashboards" / name).read_text())["panels"]
            for target in panel["targets"]
        ]
        # A request over the runner's max_tokens limit is refused before generation (the refusals panel).
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}
        assert httpx.post(f"{stack.runner}/v1/chat/completions", json=body, timeout=30).status_code == 400
        deadline = time.monotonic() + 180  # traffic between scrapes until every rate() has two samples
        empty = exprs
        n = 0
        while empty and time.monotonic() < deadline:
            for served in (stack.production, stack.canary):
                qid = _ask(served.url, QUESTIONS[n % len(QUESTIONS)])["query_id"]
                rating = "down" if n % 2 else "up"
                rated = httpx.post(f"{served.url}/feedback", json={"query_id": qid, "rating": rating}, timeout=30)
                assert rated.status_code == 201, rated.text
            _weaviate_traffic(stack.weaviate, 1)
            n += 1
            time.sleep(1)
            empty = [(name, title, e) for name, title, e in exprs if not prom.query(e)]
        assert not empty, f"panels without data: {empty}"
        # Both versions are told apart on the canary dashboard.
        by_version = prom.query(next(e for name, t, e in exprs if t == "Answers per second by version"))
        assert {r["metric"]["alias"] for r in by_version} == {"production", "canary"}
        loaded = {r["name"] for g in prom.rules() for r in g["rules"]}
        assert {"WeaviateNodeDown", "TqaRunnerDown", "TqaServingDown", "TqaLlmFallbacksHigh"} <= loaded
        # Everything is up, so the availability alerts are quiet.
        assert prom.query('ALERTS{alertname=~"WeaviateNodeDown|TqaRunnerDown|TqaServingDown"}') == []
    finally:
        prom.stop()


def test_every_dashboard_is_checked_against_a_real_prometheus() -> None:
    """A new dashboard must be added to a panel-query test (here, or test_web_page.py for the service's own)."""
    found = sorted(p.name for p in (MONITORING / "dashboards").glob("*.json"))
    assert found == sorted([*DASHBOARDS, "tqa-people.json"])
