"""Traffic through the release proxy for tests and benchmarks: users with sticky sessions, every outcome recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port_range

# Questions the mini corpus answers (tests/support/corpus.py), so production rarely abstains on them.
QUESTIONS = [
    "How do I load a model in 4-bit?",
    "How is RMS normalization implemented in Llama?",
    "How do stopping criteria end generation?",
    "How do I set the logging verbosity?",
    "How does the repetition penalty logits processor work?",
]


@dataclass
class Outcome:
    time: float
    status: int  # 0: no HTTP answer at all (connection refused, reset, timeout)
    version: str
    abstained: bool | None
    started: float = 0.0  # when the request was sent (`time` is when its answer came)
    error: str = ""  # why there was no HTTP answer (status 0), so a failing assertion says what broke


@dataclass
class Traffic:
    """`users` threads asking through `url`; each user keeps one cookie jar for `session_requests` requests."""

    url: str
    users: int = 4
    session_requests: int = 5
    think_s: float = 0.05
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _user(self, n: int) -> None:
        question = 0
        while not self._stop.is_set():
            with httpx.Client(base_url=self.url, timeout=30) as client:
                for _ in range(self.session_requests):
                    if self._stop.is_set():
                        return
                    question = (question + 1 + n) % len(QUESTIONS)
                    sent = time.time()
                    try:
                        r = client.post("/ask", json={"question": QUESTIONS[question], "k": 3})
                        abstained = r.json().get("abstained") if r.status_code == 200 else None
                        version = r.headers.get("x-tqa-version", "")
                        self.outcomes.append(Outcome(time.time(), r.status_code, version, abstained, sent))
                    except httpx.HTTPError as e:
                        self.outcomes.append(Outcome(time.time(), 0, "", None, sent, f"{type(e).__name__}: {e}"))
                    time.sleep(self.think_s)

    def __enter__(self) -> Traffic:
        for n in range(self.users):
            thread = threading.Thread(target=self._user, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def failures(self, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if o.time >= since and o.status != 200]

    def versions(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(o.version for o in self.outcomes if since <= o.time < until and o.status == 200)


def tqa(env: dict[str, str], *args: str, timeout: float = 600, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run `tqa <args>` as a user would, with `env`; output captured (and appended to `log`)."""
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ tqa {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}\n")
    return result


def release_env(data_dir: Path, weaviate_port: int, grpc_port: int, mlflow_uri: str, model: str) -> dict[str, str]:
    """The environment of `tqa release` commands over an existing index, with free ports for the release."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    base = free_port_range(5)
    env.update(
        TQA_DATA_DIR=str(data_dir),
        TQA_WEAVIATE_PORT=str(weaviate_port),
        TQA_WEAVIATE_GRPC_PORT=str(grpc_port),
        TQA_MLFLOW_TRACKING_URI=mlflow_uri,
        TQA_REGISTERED_MODEL=model,
        TQA_PROXY_PORT=str(base),
        TQA_PROMETHEUS_URL=f"http://127.0.0.1:{base + 4}",
        TQA_PROMETHEUS_SCRAPE_INTERVAL_S="2",
        BENTOML_DO_NOT_TRACK="true",
    )
    return env


def register_version(settings, name: str, work_dir: Path, **pipeline: object) -> str:  # type: ignore[no-untyped-def]
    """Register the pipeline with `pipeline` overrides as a new version of `name` (no eval: release tests only)."""
    from ml.tracking.log import connect
    from ml.tracking.model import log_pipeline

    mlflow = connect(settings)
    with mlflow.start_run() as run:
        log_pipeline(settings.model_copy(update=pipeline), work_dir)
    return str(mlflow.register_model(f"runs:/{run.info.run_id}/qa", name).version)
