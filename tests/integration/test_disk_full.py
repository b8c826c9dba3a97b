"""A full disk under the data dir: one clear sentence, nothing corrupted, and the next run completes once space is
freed. The data dir lives on a size-limited tmpfs (mounting it needs root)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.errors import disk_full
from ml.feedback.store import FeedbackStore, new_query_id, validate_feedback
from ml.index.weaviate_index import WeaviateIndex
from ml.settings import Settings
from tests.support.corpus import make_mini_corpus
from tests.support.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root"),
]

FILES = ["utils/deprecation.py", "generation/stopping_criteria.py", "optimization.py", "trainer_callback.py"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A file taking all but `leave_bytes` of the disk's free space."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    size = st.f_bavail * st.f_frsize - leave_bytes
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return filler


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_ingest_on_a_full_disk_says_so_and_the_next_run_completes_the_index(small_disk: Path, tmp_path: Path) -> None:
    corpus = make_mini_corpus(tmp_path / "corpus", FILES)
    settings = Settings(data_dir=small_disk / "data", weaviate_port=free_port(), weaviate_grpc_port=free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")} | {
        "TQA_DATA_DIR": str(settings.data_dir),
        "TQA_WEAVIATE_PORT": str(settings.weaviate_port),
        "TQA_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
    }

    def tqa(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ops.cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    filler = fill(small_disk, leave_bytes=1 << 20)
    full = tqa("ingest", "--path", str(corpus.root))
    assert full.returncode == 2, full.stderr[-2000:]
    assert "Traceback" not in full.stderr
    error = [line for line in full.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "is full" in error[0] and str(settings.data_dir) in error[0], full.stderr[-2000:]
    assert integrity(settings.state_db) == "ok"

    filler.unlink()
    again = tqa("ingest", "--path", str(corpus.root))
    assert again.returncode == 0, again.stderr[-2000:]
    with sqlite3.connect(settings.state_db) as conn:
        rows = conn.execute("SELECT path, chunk_ids FROM indexed_files").fetchall()
    assert sorted(p for p, _ in rows) == sorted(FILES)
    recorded = {i for _, ids in rows for i in json.loads(ids)}
    with WeaviateIndex.open(settings) as index:
        by_path = index.ids_for_paths(sorted(FILES))
        stored = {i for ids in by_path.values() for i in ids}
        detail = {p: (len(json.loads(ids)), len(by_path[p])) for p, ids in rows}
        assert index.count() == len(recorded) == len(stored) and stored == recorded, detail  # complete, no duplicates
    found = tqa("search", "StoppingCriteria", "--json")
    assert found.returncode == 0, found.stderr[-2000:]
    assert any("stopping_criteria" in r["path"] for r in json.loads(found.stdout)["results"])


def test_feedback_store_on_a_full_disk_fails_the_write_and_keeps_what_was_committed(small_disk: Path) -> None:
    db = small_disk / "data" / "feedback.sqlite"
    with FeedbackStore(db) as store:
        kept = new_query_id()
        store.log_query(kept, "How do I load a model in 4-bit?", {"answer": "BitsAndBytesConfig [1].", "sources": []})
        store.record(validate_feedback(kept, "up", "kept"))
        filler = fill(small_disk, leave_bytes=0)
        with pytest.raises(sqlite3.OperationalError) as refused:
            for n in range(200):  # until a page has to be added to the log
                store.log_query(new_query_id(), f"question {n} " + "x" * 4000, {"answer": "y" * 4000, "sources": []})
        assert disk_full(refused.value)
        filler.unlink()
        later = new_query_id()
        store.log_query(later, "What does repetition penalty do?", {"answer": "It divides logits [1].", "sources": []})
        store.record(validate_feedback(later, "down", "after"))
    assert integrity(db) == "ok"
    with FeedbackStore(db) as store:
        assert store.feedback(kept)["comment"] == "kept"
        assert store.feedback(later)["comment"] == "after"
