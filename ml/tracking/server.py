"""A local MLflow tracking server on 127.0.0.1: SQLite backend, artifacts in the data dir, telemetry and jobs off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ml.net import wait_until_ready

# MLflow 3 sends usage telemetry unless one of these is set (mlflow/telemetry/utils.py); nothing may leave the host.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# The server's job runner (GenAI scorers and online scoring, prompt optimisation, trace archival: nothing this project
# uses) starts seven Huey consumers that poll their queues at about 50 ms of CPU per second each: 0.35 of a core on an
# idle server, taken from whatever shares its host.
NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def disable_telemetry() -> None:
    """Turn MLflow's client telemetry off in this process before mlflow is used."""
    os.environ.update(NO_TELEMETRY)


def server_command(
    directory: Path, host: str = "127.0.0.1", port: int = 5000, backend_store_uri: str | None = None
) -> list[str]:
    """`mlflow server` with a SQLite backend (or `backend_store_uri`) and a served artifact store under `directory`."""
    directory = directory.resolve()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_store_uri or f"sqlite:///{directory / 'mlflow.db'}",
        "--artifacts-destination",
        str(directory / "artifacts"),
        "--serve-artifacts",
    ]


class MlflowServer:
    """A tracking server process this object started and stops."""

    def __init__(
        self, directory: Path, host: str = "127.0.0.1", port: int = 5000, backend_store_uri: str | None = None
    ):
        self.directory, self.host, self.port = directory, host, port
        self.backend_store_uri = backend_store_uri
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 120.0) -> MlflowServer:
        """Start the server and wait until /health answers; raises with the server's log if it exits or hangs."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen(
            server_command(self.directory, self.host, self.port, self.backend_store_uri),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **NO_TELEMETRY, **NO_JOBS},
            start_new_session=True,
        )
        log.close()
        wait_until_ready(f"{self.uri}/health", timeout_s, self.process, self.directory / "server.log")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # The server runs uvicorn workers in its session; stop the whole group it leads.
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
