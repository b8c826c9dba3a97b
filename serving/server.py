"""Runs the RAG service: owns the embedded Weaviate, starts `bentoml serve`, and records itself for the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from ml.errors import NoIndexError
from ml.index.weaviate_index import WeaviateIndex
from ml.pipeline import require_index
from ml.settings import Settings
from serving.client import server_file


def run_server(settings: Settings, host: str, port: int, say: Callable[[str], None] = print) -> int:
    """Serve until interrupted; returns the service's exit code."""
    require_index(settings)
    # The index process outlives BentoML workers and restarts, so this process starts and stops it.
    index = WeaviateIndex.open(settings)
    record = server_file(settings)
    env = dict(os.environ, BENTOML_DO_NOT_TRACK="true", TQA_HOST=host, TQA_PORT=str(port))
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.rag_service:RAGService",
        "--host",
        host,
        "--port",
        str(port),
    ]
    try:
        if not index.exists():
            raise NoIndexError(settings.data_dir)
        process = subprocess.Popen(command, env=env)
        record.write_text(json.dumps({"url": f"http://{host}:{port}", "pid": process.pid}))
        say(f"Serving on http://{host}:{port} (POST /ask, /search; /healthz, /readyz, /metrics). Ctrl-C stops.")
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            return process.wait()
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait()
    finally:
        record.unlink(missing_ok=True)
        index.close()
