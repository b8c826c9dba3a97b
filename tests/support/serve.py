"""`tqa serve` as a child process over a given index, for tests and benchmarks that must also be able to kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ml.index.local_server import processes_with_env
from ml.net import wait_until_ready
from ml.settings import Settings
from tests.support.ports import free_port


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill9(self) -> None:
        """SIGKILL the server and its workers at once, as a crash would."""
        # BentoML runs in a session of its own (tqa serve stops it in order), and its workers in theirs; all carry
        # the port in their environment.
        run = processes_with_env("TQA_PORT", self.url.rsplit(":", 1)[1])
        os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in run:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def stop(self) -> None:
        """Stop gracefully (SIGINT to the process group); a no-op when it is already gone."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill9()


def start_service(
    settings: Settings, log_dir: Path, timeout_s: float = 180, port: int | None = None, **extra_env: str
) -> Served:
    """Start `tqa serve` on `port` (default: a free one) over `settings`' data dir and Weaviate ports; returns once it
    is ready."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    env.update(
        TQA_DATA_DIR=str(settings.data_dir),
        TQA_WEAVIATE_PORT=str(settings.weaviate_port),
        TQA_WEAVIATE_GRPC_PORT=str(settings.weaviate_grpc_port),
        BENTOML_DO_NOT_TRACK="true",
        **extra_env,
    )
    log = log_dir / f"serve-{port}.log"
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_until_ready(f"{served.url}/readyz", timeout_s, proc, log)
    except BaseException:
        served.stop()
        raise
    return served
