"""Ingest state in SQLite (WAL): which file versions are fully indexed, and their chunk ids."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    chunk_ids TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FileState:
    path: str
    sha256: str
    chunk_ids: list[str]


class IngestState:
    """A file's row is written only after all its chunks are in the index, so a crash never marks it done."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def files(self) -> dict[str, FileState]:
        rows = self._db.execute("SELECT path, sha256, chunk_ids FROM files").fetchall()
        return {p: FileState(p, s, json.loads(ids)) for p, s, ids in rows}

    def record(self, states: Iterable[FileState]) -> None:
        """Mark file versions as fully indexed, atomically."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO files (path, sha256, chunk_ids) VALUES (?, ?, ?)",
                [(s.path, s.sha256, json.dumps(s.chunk_ids)) for s in states],
            )

    def forget(self, paths: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    def clear(self) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM files")
            self._db.execute("DELETE FROM meta")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
