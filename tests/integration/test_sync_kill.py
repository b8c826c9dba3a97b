"""`tqa sync` SIGKILLed while it writes a checkout's history, then run again: the index equals a fresh sync's."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ml.index.weaviate_index import WeaviateIndex
from tests.integration.conftest import make_settings
from tests.integration.test_core_cli import TQA, run_tqa, tqa_env
from tests.integration.test_history_sync_weaviate import read_back
from tests.support import history_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def commits_being_written(state_db: Path) -> int:
    """Commits whose intent is recorded and whose chunks are not all written yet (the worst moment to crash)."""
    if not state_db.exists():
        return 0
    try:
        with sqlite3.connect(state_db) as db:
            return int(db.execute("SELECT count(*) FROM history_commits WHERE done = 0").fetchone()[0])
    except sqlite3.OperationalError:  # the table is created by the run
        return 0


def test_kill_9_during_sync_then_rerun_equals_a_fresh_sync(tmp_path: Path) -> None:
    repo = tmp_path / "minitf"
    heads = history_repo.build(repo)
    settings = make_settings(tmp_path / "server")
    with WeaviateIndex.open(settings) as server:

        def env_for(name: str) -> dict[str, str]:
            return {
                **tqa_env(tmp_path / name),
                "TQA_WEAVIATE_URL": f"http://127.0.0.1:{settings.weaviate_port}",
                "TQA_WEAVIATE_GRPC_URL": f"http://127.0.0.1:{settings.weaviate_grpc_port}",
                "TQA_COLLECTION": name.capitalize(),
            }

        killed_env = env_for("killed")
        proc = subprocess.Popen(
            [*TQA, "sync", "--path", str(repo), "--no-github"],
            env=killed_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill while a batch of commits is recorded as intent and its chunks are being embedded and written.
        state_db = tmp_path / "killed" / "state.sqlite"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and commits_being_written(state_db) == 0:
            time.sleep(0.01)
        assert proc.poll() is None, "sync finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert commits_being_written(state_db) > 0
        torn = read_back(WeaviateIndex(server.client, "Killed"))

        rerun = run_tqa("sync", "--path", str(repo), "--no-github", env=killed_env)
        assert rerun.returncode == 0, rerun.stderr
        fresh = run_tqa("sync", "--path", str(repo), "--no-github", env=env_for("fresh"))
        assert fresh.returncode == 0, fresh.stderr
        got, want = read_back(WeaviateIndex(server.client, "Killed")), read_back(WeaviateIndex(server.client, "Fresh"))
        assert got == want and len(got) > len(heads)
        assert torn != want  # the re-run repaired an index the kill really left incomplete
