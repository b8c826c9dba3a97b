"""A data dir owns its Weaviate; `tqa serve` stops its children on SIGTERM and cleans up after a crash; the doors.

Real processes, real signals, real ports: `tqa ingest` and `tqa serve` run as subprocesses over real Weaviate servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ml.index.embed import Embedder
from ml.index.ingest import ingest
from ml.index.local_server import alive, port_open, processes_with_env, read_record
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.net import wait_until_ready
from ml.settings import Settings
from ml.sources.corpus import chunk_file, resolve_corpus
from serving.server import RUN_ID_VAR
from tests.integration.conftest import Indexed, make_settings
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

TQA = [sys.executable, "-m", "ops.cli"]
ONE_FILE = ["models/llama/modeling_llama.py"]


def tqa_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    env.update(
        TQA_DATA_DIR=str(settings.data_dir),
        TQA_WEAVIATE_PORT=str(settings.weaviate_port),
        TQA_WEAVIATE_GRPC_PORT=str(settings.weaviate_grpc_port),
        BENTOML_DO_NOT_TRACK="true",
        **extra,
    )
    return env


def test_a_second_data_dir_never_writes_into_the_first_ones_server(indexed: Indexed, tmp_path: Path) -> None:
    a = indexed.settings
    before = {c.id for c in indexed.index.iter_chunks()}
    # Data dir B configured with A's ports, as two data dirs with default settings would be.
    b = Settings(data_dir=tmp_path / "b", weaviate_port=a.weaviate_port, weaviate_grpc_port=a.weaviate_grpc_port)
    corpus = make_mini_corpus(tmp_path / "corpus", ONE_FILE)
    result = subprocess.run(
        [*TQA, "ingest", "--path", str(corpus.root)], env=tqa_env(b), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert {c.id for c in indexed.index.iter_chunks()} == before, "B's ingest changed A's index"
    record = read_record(b)
    assert record is not None and record.http_port != a.weaviate_port and record.grpc_port != a.weaviate_grpc_port
    cli_corpus = resolve_corpus(path=corpus.root)
    expected = {
        c.id for f in cli_corpus.iter_files() for c in chunk_file(cli_corpus, cli_corpus.rel(f), f.read_bytes()).chunks
    }
    # Opening B again (same configured ports, A still listening there) starts B's own server on B's data.
    with WeaviateIndex.open(b) as index_b:
        stored = {c.id for c in index_b.iter_chunks()}
        assert read_record(b).pid != read_record(a).pid  # type: ignore[union-attr]
    assert stored == expected
    assert not stored & before


def _run_pids(settings: Settings) -> set[int]:
    """The BentoML server and workers of the `tqa serve` run recorded in the data dir."""
    run_id = json.loads((settings.data_dir / "server.json").read_text())["run_id"]
    return processes_with_env(RUN_ID_VAR, run_id)


def _start_serve(settings: Settings, port: int, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    with log.open("a") as out:
        proc = subprocess.Popen(
            [*TQA, "serve", "--port", str(port)],
            env=tqa_env(settings, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Ready means this run's record is written and the port answers (a crashed run's server may still hold it).
    record = settings.data_dir / "server.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(record.read_text())["pid"] == proc.pid:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    wait_until_ready(f"http://127.0.0.1:{port}/readyz", 240, proc, log)
    return proc


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def _check_doors(url: str) -> None:
    """Doors on the real service: unknown kind, size limit, API key on admin routes, per-client rate limit."""
    bad_kind = httpx.post(f"{url}/search", json={"query": "llama", "kind": ["module", "nope"]})
    assert bad_kind.status_code == 400
    assert "'nope'" in bad_kind.text and "valid kinds are module" in bad_kind.text
    big = httpx.post(f"{url}/search", content=b'{"query": "' + b"x" * 70_000 + b'"}')
    assert big.status_code == 413
    assert httpx.post(f"{url}/admin/reindex", json={}).status_code == 401
    assert httpx.post(f"{url}/admin/reindex", json={}, headers={"X-API-Key": "wrong"}).status_code == 401
    # A valid key passes the door (there is no such route yet, so the app answers 404).
    assert httpx.post(f"{url}/admin/reindex", json={}, headers={"X-API-Key": "key-two"}).status_code == 404
    # Burst 3 per worker (2 workers): at most 6 of 12 quick requests from one IP pass, the rest get 429.
    codes = []
    for _ in range(12):
        r = httpx.post(f"{url}/search", json={"query": "RMSNorm", "k": 1})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert "retry after" in r.json()["error"]
    assert set(codes) <= {200, 429} and codes.count(429) >= 6, codes
    # A client with its own key has its own bucket.
    keyed = httpx.post(f"{url}/search", json={"query": "RMSNorm", "k": 1}, headers={"Authorization": "Bearer key-one"})
    assert keyed.status_code == 200


def test_serve_stops_its_children_on_sigterm_and_cleans_up_after_a_crash(embedder: Embedder, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    corpus = make_mini_corpus(tmp_path / "corpus", ONE_FILE)
    with WeaviateIndex.open(settings) as index:
        state = StateStore(settings.state_db)
        try:
            ingest(corpus, index, state, embedder)
        finally:
            state.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    doors = {"TQA_API_KEYS": "key-one, key-two", "TQA_RATE_LIMIT_PER_MINUTE": "6", "TQA_RATE_LIMIT_BURST": "3"}
    started: set[int] = set()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        first = _start_serve(settings, port, log, **doors)
        procs.append(first)
        bento = _run_pids(settings)
        weaviate = read_record(settings)
        assert weaviate is not None and weaviate.owner_pid == first.pid
        started |= bento | {weaviate.pid}
        assert len(bento) >= 3, "expected the BentoML server and its workers"
        _check_doors(url)

        # A crash: tqa serve dies without cleaning up; its children keep running.
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(1)
        assert any(alive(p) for p in bento) and alive(weaviate.pid)

        second = _start_serve(settings, port, log)
        procs.append(second)
        new_weaviate = read_record(settings)
        assert new_weaviate is not None
        started |= _run_pids(settings)
        started.add(new_weaviate.pid)
        assert not any(alive(p) for p in bento), "the crashed server's BentoML processes were not stopped"
        assert not alive(weaviate.pid) and new_weaviate.pid != weaviate.pid
        assert "left by" in log.read_text()

        # SIGTERM to tqa serve alone, as `kill` or a process manager sends it.
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=90) == 0
        assert not [p for p in started if alive(p)], "children outlived tqa serve"
        for p in (port, new_weaviate.http_port, new_weaviate.grpc_port):
            assert not port_open(p), f"port {p} still open after shutdown"
        assert not (settings.data_dir / "server.json").exists()
    finally:
        _kill_all(started)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
