"""The `tqa` command as a user runs it: clear errors, kill -9 during ingest, the batch contracts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml.index.weaviate_index import WeaviateIndex, pid_alive
from ml.settings import Settings
from ml.sources.corpus import chunk_file, resolve_corpus
from tests.integration.conftest import Indexed
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

TQA = [sys.executable, "-m", "ops.cli"]


def run_tqa(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TQA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def tqa_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    env.update(
        TQA_DATA_DIR=str(data_dir),
        TQA_WEAVIATE_PORT=str(free_port()),
        TQA_WEAVIATE_GRPC_PORT=str(free_port()),
        BENTOML_DO_NOT_TRACK="true",
    )
    return env


def test_user_mistakes_are_one_sentence_without_traceback(tmp_path: Path) -> None:
    env = tqa_env(tmp_path / "data")
    missing = run_tqa("ingest", "--path", str(tmp_path / "no-such-dir"), env=env)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    no_index = run_tqa("ask", "What is a pipeline?", env=env)
    assert no_index.returncode == 2
    assert "run `tqa ingest` first" in no_index.stderr and "Traceback" not in no_index.stderr
    assert len(no_index.stderr.strip().splitlines()) == 1


def test_kill_9_during_ingest_then_rerun_leaves_a_complete_index_without_duplicates(tmp_path: Path) -> None:
    files = ["generation/logits_process.py", "masking_utils.py", "models/llama/modeling_llama.py", "utils/doc.py"]
    corpus = make_mini_corpus(tmp_path / "corpus", files)
    env = tqa_env(tmp_path / "data")
    state_db = tmp_path / "data" / "state.sqlite"
    proc = subprocess.Popen(
        [*TQA, "ingest", "--path", str(corpus.root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    # Kill as soon as the first batch is recorded and more is still to come.
    while time.monotonic() < deadline and proc.poll() is None:
        if state_db.exists():
            with sqlite3.connect(state_db) as db:
                try:
                    if db.execute("SELECT count(*) FROM indexed_files").fetchone()[0] > 0:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The orphaned embedded server is found through its pid file and reused by the re-run.
    rerun = run_tqa("ingest", "--path", str(corpus.root), env=env)
    assert rerun.returncode == 0, rerun.stderr
    again = resolve_corpus(path=corpus.root)
    expected = {c.id for f in again.iter_files() for c in chunk_file(again, again.rel(f), f.read_bytes()).chunks}
    settings = Settings(
        data_dir=tmp_path / "data",
        weaviate_port=int(env["TQA_WEAVIATE_PORT"]),
        weaviate_grpc_port=int(env["TQA_WEAVIATE_GRPC_PORT"]),
    )
    try:
        with WeaviateIndex.open(settings) as index:
            stored = index.ids_for_paths([again.rel(f) for f in again.iter_files()])
            ids = [i for s in stored.values() for i in s]
            assert len(ids) == len(set(ids)) == index.count()
            assert set(ids) == expected
    finally:
        pid = pid_alive(tmp_path / "data" / "weaviate.pid")
        if pid:
            os.kill(pid, signal.SIGTERM)


def test_batch_search_and_ask_contracts(indexed: Indexed, tmp_path: Path) -> None:
    env = tqa_env(indexed.settings.data_dir)
    env["TQA_WEAVIATE_PORT"] = str(indexed.settings.weaviate_port)
    env["TQA_WEAVIATE_GRPC_PORT"] = str(indexed.settings.weaviate_grpc_port)
    batch = tmp_path / "q.jsonl"
    batch.write_text(
        json.dumps({"id": "a", "question": "How is RMS normalization implemented in Llama?"})
        + "\n"
        + json.dumps({"id": "b", "question": "How do I bake sourdough bread?"})
        + "\n"
    )
    search = run_tqa("search", "--batch", str(batch), "--k", "10", env=env)
    assert search.returncode == 0, search.stderr
    lines = [json.loads(line) for line in search.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["a", "b"]
    first = lines[0]["results"]
    assert len(first) == 10
    assert set(first[0]) == {"path", "start_line", "end_line", "symbol", "kind", "score"}
    assert first[0]["path"].startswith("transformers/")
    assert [r["score"] for r in first] == sorted((r["score"] for r in first), reverse=True)
    assert any(r["symbol"] == "LlamaRMSNorm" for r in first[:5])

    ask = run_tqa("ask", "--batch", str(batch), env=env)
    assert ask.returncode == 0, ask.stderr
    answers = [json.loads(line) for line in ask.stdout.splitlines()]
    assert set(answers[0]) == {"id", "answer", "abstained", "confidence", "sources"}
    assert not answers[0]["abstained"] and "[1]" in answers[0]["answer"]
    assert answers[1]["abstained"] and answers[1]["sources"] == []


def test_status_writes_its_json_to_stdout_so_it_can_be_piped(indexed: Indexed) -> None:
    env = tqa_env(indexed.settings.data_dir)
    env["TQA_WEAVIATE_PORT"] = str(indexed.settings.weaviate_port)
    env["TQA_WEAVIATE_GRPC_PORT"] = str(indexed.settings.weaviate_grpc_port)
    shown = run_tqa("status", env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)  # what `tqa status | jq` reads
    assert status["corpus"] == indexed.corpus.name
    assert status["files"] == indexed.report.files_seen
    assert status["chunks"] == indexed.index.count() == sum(status["by_kind"].values())
    assert "{" not in shown.stderr
