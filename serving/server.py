"""Runs the RAG service: owns the embedded Weaviate, starts `bentoml serve`, and records itself for the CLI.

Lifecycle: SIGTERM and SIGINT stop the BentoML server with its workers (every process of the run) and the embedded
Weaviate this process started; a record left by a crashed `tqa serve` (`server.json`) and the processes it names
are cleaned up on the next start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml.errors import NoIndexError, UserError
from ml.index.local_server import alive, processes_with_env, stop_orphan, terminate
from ml.index.weaviate_index import WeaviateIndex
from ml.pipeline import require_index
from ml.settings import Settings
from serving.client import server_file

STOP_TIMEOUT_S = 30.0
# Marks every process of one `tqa serve` run (BentoML starts its workers in sessions of their own, so neither the
# process group nor the parent link finds them all after a crash).
RUN_ID_VAR = "TQA_SERVE_RUN_ID"


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM handler so the cleanup below runs."""


def clean_stale_record(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Clean up after a `tqa serve` of this data dir that crashed (one still running is left alone)."""
    record = server_file(settings)
    try:
        info: dict[str, Any] = json.loads(record.read_text())
    except (OSError, ValueError):
        record.unlink(missing_ok=True)
        info = {}
    if info:
        if alive(int(info.get("pid", 0))):
            # A second server on the same data dir (another port, a release slot) is allowed; the CLI then finds
            # the newest one.
            say(f"Another tqa serve (pid {info['pid']}) serves this data dir at {info.get('url')}.")
            return
        left = processes_with_env(RUN_ID_VAR, str(info["run_id"])) if info.get("run_id") else set()
        if left:
            say(f"Stopping {len(left)} BentoML processes left by a tqa serve that did not shut down.")
            _stop_all(left)
        record.unlink(missing_ok=True)
    orphan = stop_orphan(settings, STOP_TIMEOUT_S)
    if orphan:
        say(f"Stopped the Weaviate server (pid {orphan}) left by a process that did not shut down.")


def bento_store(settings: Settings) -> Path:
    """Where `make bento` keeps bentos: $BENTOML_HOME, else `bentoml` in the data dir (the build script's default)."""
    return Path(os.environ.get("BENTOML_HOME") or Path(settings.data_dir).resolve() / "bentoml")


def bento_path(settings: Settings) -> Path:
    """The built bento `settings.bento` names (name:version) in the bento store; one sentence if it is not there."""
    name, _, version = settings.bento.partition(":")
    store = bento_store(settings)
    path = store / "bentos" / name / version
    if not name or not version or version == "latest":
        raise UserError(f"Bento '{settings.bento}' must be name:version, e.g. the tqa-rag:<sha> `make bento` prints.")
    if not (path / "bento.yaml").is_file():
        raise UserError(
            f"Bento {settings.bento} is not in the bento store {store}; build it (`make bento`) or import its "
            "archive (`bentoml import dist/bento/...`), with BENTOML_HOME pointing at that store."
        )
    return path


def run_server(settings: Settings, host: str, port: int, say: Callable[[str], None] = print) -> int:
    """Serve until interrupted (SIGINT or SIGTERM); returns the service's exit code."""
    release_env: dict[str, str] = {}
    if settings.model_version or settings.model_alias:
        from ml.tracking.release import resolve

        release = resolve(settings, alias=settings.model_alias or None, version=settings.model_version or None)
        settings = settings.model_copy(update=release.pinned)
        release_env = release.env()
        say(f"Release: version {release.version} of {settings.registered_model} (alias {release.alias or '-'}).")
    require_index(settings)
    clean_stale_record(settings, say)
    # The index process outlives BentoML workers and restarts, so this process starts and stops it.
    index = WeaviateIndex.open(settings)
    record = server_file(settings)
    run_id = uuid.uuid4().hex
    bento = bento_path(settings) if settings.bento else None
    env = dict(
        os.environ,
        **{RUN_ID_VAR: run_id},
        BENTOML_DO_NOT_TRACK="true",
        TQA_HOST=host,
        TQA_PORT=str(port),
        # BentoML keeps its workers' metrics in $BENTOML_HOME/prometheus_multiproc_dir and empties it at start: a
        # home of this data dir's own, so a second server on the machine neither wipes nor reports these numbers.
        BENTOML_HOME=str(Path(settings.data_dir).resolve() / "bentoml-serve"),
        **release_env,
    )
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        str(bento) if bento else "serving.rag_service:RAGService",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if bento:
        say(f"Running bento {settings.bento} ({bento}).")

    def on_term(signum: int, frame: object) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_term)
    process: subprocess.Popen[bytes] | None = None
    try:
        if not index.exists():
            raise NoIndexError(settings.data_dir)
        # Its own session: a terminal's Ctrl-C reaches this process, which stops the server in order.
        # A bento runs its own copy of the code: its src/ is the working directory, not this checkout.
        process = subprocess.Popen(command, env=env, start_new_session=True, cwd=bento / "src" if bento else None)
        info = {"url": f"http://{host}:{port}", "pid": os.getpid(), "bentoml_pid": process.pid, "run_id": run_id}
        record.write_text(json.dumps(info))
        say(f"Serving on http://{host}:{port} (POST /ask, /search; /healthz, /readyz, /metrics). Ctrl-C stops.")
        try:
            return process.wait()
        except (KeyboardInterrupt, _Stop):
            return _stop(process, run_id)
    finally:
        # A second signal during cleanup must not cut it short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if process is not None and process.poll() is None:
                _stop(process, run_id)
            _unlink_if_ours(record)
            index.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _unlink_if_ours(record: Path) -> None:
    """Remove the server record unless a later `tqa serve` of the same data dir has replaced it."""
    try:
        if json.loads(record.read_text()).get("pid") != os.getpid():
            return
    except (OSError, ValueError):
        return
    record.unlink(missing_ok=True)


def _stop(process: subprocess.Popen[bytes], run_id: str) -> int:
    """SIGTERM to the BentoML server (it stops its workers), SIGKILL after STOP_TIMEOUT_S, then any process of
    this run that outlived it; returns the server's exit code."""
    process.terminate()
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    _stop_all(processes_with_env(RUN_ID_VAR, run_id), timeout=5.0)
    return code


def _stop_all(pids: set[int], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every pid, then SIGKILL those still alive after `timeout` seconds (one deadline for all)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            terminate(pid, 0.0)
