"""kill -9 the LLM runner behind `tqa serve` while /ask is called, then start it again on the same port.

Shared by the runner fault test (tests/integration/test_qwen_runner_rag.py) and its benchmark (bench/runner_faults.py).
The runner serves the tiny random-weight Qwen model, whose text never passes citation verification: an answer that
reached the runner says so in `fallback` ("llm answer failed citation verification"), one that did not says
"llm unavailable" or "circuit open". Either way the answer itself is the extractive one.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ml.index.local_server import processes_with_env
from ml.settings import Settings
from tests.support.qwen_runner import start_runner
from tests.support.serve import start_service

QUESTIONS = [
    "How is RMS normalization implemented in Llama?",
    "How do I load a model in 4-bit?",
    "What does the repetition penalty logits processor do?",
]
REACHED = "llm answer failed citation verification"
RUNNER_UP = re.compile(r"^tqa_llm_runner_up(?:\{[^}]*\})? (\S+)$", re.M)


@dataclass
class Health:
    """What an operator sees of the service at one moment: /readyz, /healthz's `runner`, the runner gauge."""

    readyz: int = 0
    runner: dict[str, Any] = field(default_factory=dict)
    gauge: list[float] = field(default_factory=list)
    seconds: float = 0.0  # until /healthz showed the runner state waited for


def observe_health(http: httpx.Client, url: str, want_up: bool, timeout_s: float = 30.0) -> Health:
    """Polls /healthz until its `runner.up` is `want_up` (or `timeout_s` passes), then reads /readyz and /metrics."""
    started = time.monotonic()
    health = Health()
    while True:
        body = http.get(f"{url}/healthz").json()
        health.runner = body.get("runner") or {}
        if health.runner.get("up") is want_up or time.monotonic() - started > timeout_s:
            break
        time.sleep(0.2)
    health.seconds = time.monotonic() - started
    health.readyz = http.get(f"{url}/readyz").status_code
    health.gauge = [float(v) for v in RUNNER_UP.findall(http.get(f"{url}/metrics").text)]
    return health


@dataclass
class RunnerFaultReport:
    asks_before: int = 0
    asks_down: int = 0
    asks_after: int = 0
    failed: int = 0
    reached_before: int = 0
    reached_while_down: int = 0
    down_reasons: Counter[str] = field(default_factory=Counter)
    down_latencies_ms: list[float] = field(default_factory=list)
    runner_restart_s: float = 0.0
    recovered_s: float = float("inf")
    errors: list[str] = field(default_factory=list)
    health_before: Health = field(default_factory=Health)
    health_down: Health = field(default_factory=Health)
    health_after: Health = field(default_factory=Health)


def _kill9(home: Path) -> None:
    """SIGKILL every process of the runner (BentoML's supervisor and workers, found by their BENTOML_HOME)."""
    for pid in processes_with_env("BENTOML_HOME", str(home)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_runner_fault_scenario(
    settings: Settings,
    model_dir: Path,
    log_dir: Path,
    down_s: float = 8.0,
    reset_s: float = 2.0,
    recover_timeout_s: float = 60.0,
) -> RunnerFaultReport:
    """`tqa serve` (answerer llm, circuit reset `reset_s`) on `settings`' index with the runner on `model_dir`.

    /ask before the kill, for `down_s` with the runner SIGKILLed, then after it is started again: every answer must be a
    200 with sources; `recovered_s` is the time from the runner's readiness to the first answer that reached it.
    """
    report = RunnerFaultReport()
    home = log_dir / "runner-home"
    home.mkdir(parents=True, exist_ok=True)
    runner_env = {"TQA_RUNNER_TORCH_THREADS": "1", "TQA_RUNNER_DEFAULT_MAX_TOKENS": "48"}
    proc, runner_url = start_runner(model_dir, home, runner_env)
    port = int(runner_url.rsplit(":", 1)[1])
    served = None
    try:
        served = start_service(
            settings,
            log_dir,
            TQA_ANSWERER="llm",
            TQA_LLM_URL=f"{runner_url}/v1",
            TQA_LLM_MODEL="tiny",
            TQA_LLM_MAX_TOKENS="48",
            TQA_LLM_TIMEOUT_S="60",
            TQA_LLM_BREAKER_RESET_S=str(reset_s),
            TQA_LLM_PROBE_S="0.5",
        )
        http = httpx.Client(timeout=120)
        n = 0

        def ask() -> tuple[str, float]:
            """One /ask; returns its fallback reason ('' when it failed, counted) and its latency."""
            nonlocal n
            n += 1
            started = time.monotonic()
            try:
                response = http.post(f"{served.url}/ask", json={"question": QUESTIONS[n % len(QUESTIONS)]})
                body = response.json() if response.status_code == 200 else {}
            except httpx.HTTPError as exc:
                response, body = None, {"error": repr(exc)}
            ms = (time.monotonic() - started) * 1000
            if response is None or response.status_code != 200 or not body.get("sources"):
                report.failed += 1
                report.errors.append(f"/ask: {getattr(response, 'status_code', '')} {body}"[:300])
                return "", ms
            return body.get("fallback") or f"answerer {body.get('answerer')}", ms

        for _ in range(4):
            reason, _ms = ask()
            report.asks_before += 1
            report.reached_before += reason.startswith(REACHED)
        report.health_before = observe_health(http, served.url, want_up=True)
        _kill9(home)
        proc.wait()
        killed = time.monotonic()
        while time.monotonic() - killed < down_s:
            reason, ms = ask()
            report.asks_down += 1
            report.down_latencies_ms.append(ms)
            report.reached_while_down += reason.startswith(REACHED)
            report.down_reasons[reason.split(":")[0].split(" after ")[0]] += 1
        report.health_down = observe_health(http, served.url, want_up=False)
        restarting = time.monotonic()
        proc, _url = start_runner(model_dir, home, runner_env, port=port)
        report.runner_restart_s = time.monotonic() - restarting
        ready = time.monotonic()
        while time.monotonic() - ready < recover_timeout_s:
            reason, _ms = ask()
            report.asks_after += 1
            if reason.startswith(REACHED):
                report.recovered_s = time.monotonic() - ready
                break
            time.sleep(0.2)
        report.health_after = observe_health(http, served.url, want_up=True)
        http.close()
    finally:
        if served is not None:
            served.stop()
        _kill9(home)
        if proc.poll() is None:
            proc.wait()
    return report
