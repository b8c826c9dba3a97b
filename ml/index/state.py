"""The data dir's one state store (SQLite, WAL): what is fully indexed, per file, commit and issue, and the cursors.

Every front door of the ingest engine (`tqa ingest`, `tqa sync`, `tqa watch`) records here, through one connection
with one set of pragmas. A row is written only after the index write it describes succeeded, so a crash never marks
work done that is not in the index.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILES_TABLE = """CREATE TABLE IF NOT EXISTS indexed_files (
    corpus TEXT NOT NULL, path TEXT NOT NULL, version TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    PRIMARY KEY (corpus, path)
)"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{FILES_TABLE};
CREATE TABLE IF NOT EXISTS history_commits (
    corpus TEXT NOT NULL, sha TEXT NOT NULL, chunk_ids TEXT NOT NULL, paths TEXT NOT NULL, done INTEGER NOT NULL,
    PRIMARY KEY (corpus, sha)
);
CREATE TABLE IF NOT EXISTS github_items (
    corpus TEXT NOT NULL, number INTEGER NOT NULL, updated_at TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    PRIMARY KEY (corpus, number)
);
CREATE TABLE IF NOT EXISTS github_etags (url TEXT PRIMARY KEY, etag TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class FileState:
    """A file version that is fully in the index: content hash (tree) or blob SHA (git), and its chunk ids."""

    path: str
    version: str
    chunk_ids: list[str]


class StateStore:
    """One SQLite file per data dir; file, commit and issue rows are scoped to a corpus, `meta` to the data dir.

    Args:
        path: The state file (created with its parent directory when missing).
        corpus: The corpus whose rows the per-corpus methods read and write ('' for data-dir meta only).
    """

    def __init__(self, path: Path, corpus: str = "", _db: sqlite3.Connection | None = None):
        self.path, self.corpus = path, corpus
        self._owns = _db is None
        if _db is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            _db.execute("PRAGMA journal_mode=WAL")
            _db.execute("PRAGMA synchronous=NORMAL")
            _db.execute("PRAGMA busy_timeout=10000")
            _migrate(_db)
            _db.executescript(SCHEMA)
        self._db = _db

    def for_corpus(self, corpus: str) -> StateStore:
        """The same store scoped to another corpus (shares the connection; closing it closes nothing)."""
        return StateStore(self.path, corpus, _db=self._db)

    def close(self) -> None:
        if self._owns:
            self._db.close()

    # Data-dir meta: corpus, embedding model, chunker version, what `tqa status` shows. ---------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    # Files of the corpus. ----------------------------------------------------------------------------------------
    def files(self) -> dict[str, FileState]:
        rows = self._db.execute(
            "SELECT path, version, chunk_ids FROM indexed_files WHERE corpus = ?", (self.corpus,)
        ).fetchall()
        return {p: FileState(p, v, json.loads(ids)) for p, v, ids in rows}

    def record_files(self, states: Iterable[FileState]) -> None:
        """Mark file versions as fully indexed, atomically."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO indexed_files VALUES (?, ?, ?, ?)",
                [(self.corpus, s.path, s.version, json.dumps(s.chunk_ids)) for s in states],
            )

    def forget_files(self, paths: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany(
                "DELETE FROM indexed_files WHERE corpus = ? AND path = ?", [(self.corpus, p) for p in paths]
            )

    # Commits of the history: (chunk ids, paths touched, done). -----------------------------------------------------
    def commits(self) -> dict[str, tuple[list[str], list[str], bool]]:
        rows = self._db.execute(
            "SELECT sha, chunk_ids, paths, done FROM history_commits WHERE corpus = ?", (self.corpus,)
        ).fetchall()
        return {sha: (json.loads(ids), json.loads(paths), bool(done)) for sha, ids, paths, done in rows}

    def put_commits(self, rows: list[tuple[str, list[str], list[str]]], done: bool) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO history_commits VALUES (?, ?, ?, ?, ?)",
                [(self.corpus, sha, json.dumps(ids), json.dumps(paths), int(done)) for sha, ids, paths in rows],
            )

    def forget_commits(self, shas: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany(
                "DELETE FROM history_commits WHERE corpus = ? AND sha = ?", [(self.corpus, s) for s in shas]
            )

    # GitHub issues and PRs: (updated_at, chunk ids). ---------------------------------------------------------------
    def items(self) -> dict[int, tuple[str, list[str]]]:
        rows = self._db.execute(
            "SELECT number, updated_at, chunk_ids FROM github_items WHERE corpus = ?", (self.corpus,)
        ).fetchall()
        return {n: (u, json.loads(ids)) for n, u, ids in rows}

    def put_items(self, rows: list[tuple[int, str, list[str]]]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO github_items VALUES (?, ?, ?, ?)",
                [(self.corpus, n, u, json.dumps(ids)) for n, u, ids in rows],
            )

    def etags(self) -> SqliteEtags:
        return SqliteEtags(self._db)

    # Per-corpus cursors: the synced head, the GitHub `since`. ------------------------------------------------------
    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM history_meta WHERE key = ?", (f"{self.corpus}:{key}",)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO history_meta VALUES (?, ?)", (f"{self.corpus}:{key}", value))

    def clear(self) -> None:
        """Forget everything (the index is being rebuilt)."""
        with self._transaction():
            for table in ("meta", "indexed_files", "history_commits", "github_items", "history_meta"):
                self._db.execute(f"DELETE FROM {table}")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class SqliteEtags:
    """The GitHub client's conditional-request cache, kept across runs (a dict-like view of `github_etags`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, url: str, default: Any = None) -> tuple[str, str] | None:
        row = self._db.execute("SELECT etag, body FROM github_etags WHERE url = ?", (url,)).fetchone()
        return (row[0], row[1]) if row else default

    def __setitem__(self, url: str, value: tuple[str, str]) -> None:
        with _Transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO github_etags VALUES (?, ?, ?)", (url, *value))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _migrate(db: sqlite3.Connection) -> None:
    """Move file rows of the earlier layout (`files` for a tree, `history_files` for a checkout) into one table."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "files" not in tables and "history_files" not in tables:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(FILES_TABLE)
        if "files" in tables:
            row = db.execute("SELECT value FROM meta WHERE key = 'corpus'").fetchone() if "meta" in tables else None
            corpus = row[0] if row else ""
            db.execute("INSERT OR REPLACE INTO indexed_files SELECT ?, path, sha256, chunk_ids FROM files", (corpus,))
            db.execute("DROP TABLE files")
        if "history_files" in tables:
            db.execute("INSERT OR REPLACE INTO indexed_files SELECT corpus, path, blob, chunk_ids FROM history_files")
            db.execute("DROP TABLE history_files")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
