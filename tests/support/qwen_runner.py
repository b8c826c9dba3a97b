"""The Qwen runner as a real `bentoml serve` child process on a free 127.0.0.1 port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ml.net import wait_until_ready
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def start_runner(
    model_dir: Path, home: Path, env: dict[str, str] | None = None, timeout_s: float = 120.0, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`bentoml serve` the runner on `model_dir` with `TQA_RUNNER_*` settings from `env`; returns once /readyz is 200.

    `port` (default: a free one) lets a killed runner come back where its clients expect it.

    The runner's output goes to a log file in `home` (its `BENTOML_HOME`), whose tail is in the error if it fails.
    """
    port = port or free_port()
    full_env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(home),
        "TQA_RUNNER_MODEL": str(model_dir),
        **(env or {}),
    }
    log = home / f"runner-{port}.log"
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "serving.qwen_runner:QwenRunner"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", timeout_s, proc, log)
    except BaseException:
        stop_runner(proc)
        raise
    return proc, url


def stop_runner(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the runner's process group, SIGKILL it if it has not exited after `timeout_s`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
