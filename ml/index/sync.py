"""Incremental sync of a git checkout's code and history, and of GitHub issues and PRs, into the index.

The index after `sync_git(rev)` equals a from-scratch sync of `rev` into an empty index: code chunks are made from
the blobs at `rev`, pinned to the last commit that changed their file (so unchanged files keep identical chunks),
with `history` from `git blame`; commit and diff chunks exist for every commit reachable from `rev`.

Crash safety: a state row is written only after the index write it describes succeeded (commit rows are written
first as intent, marked done after), and the recorded head and the GitHub `since` cursor advance last. Killing a
sync at any point and running it again converges to the same index without duplicates, because ids are
deterministic and stale ids are computed from the index and the state, not from the interrupted run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ml.sources.blame import annotate
from ml.sources.git_history import git, history_chunks, resolve
from ml.types import Chunk

HISTORY_KINDS = ("commit", "diff", "issue", "pr")
CODE_SUFFIXES = (".py", ".md", ".mdx")
SKIP_DIRS = {"__pycache__", "node_modules", "build", "dist", ".venv", "venv", ".tox", ".eggs", "site-packages"}
BATCH_FILES = 200
BATCH_COMMITS = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS history_commits (
    corpus TEXT NOT NULL, sha TEXT NOT NULL, chunk_ids TEXT NOT NULL, paths TEXT NOT NULL, done INTEGER NOT NULL,
    PRIMARY KEY (corpus, sha)
);
CREATE TABLE IF NOT EXISTS history_files (
    corpus TEXT NOT NULL, path TEXT NOT NULL, blob TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    PRIMARY KEY (corpus, path)
);
CREATE TABLE IF NOT EXISTS github_items (
    corpus TEXT NOT NULL, number INTEGER NOT NULL, updated_at TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    PRIMARY KEY (corpus, number)
);
CREATE TABLE IF NOT EXISTS github_etags (url TEXT PRIMARY KEY, etag TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Sink(Protocol):
    """Where chunks go: the Weaviate index in the product (`IndexSink`), a dict in unit tests."""

    def write(self, chunks: list[Chunk]) -> None: ...

    def delete(self, ids: Iterable[str]) -> None: ...

    def stored_ids(self, paths: list[str], kinds: tuple[str, ...] | None, exclude: tuple[str, ...] = ()) -> set[str]:
        """Ids stored under `paths` whose kind is in `kinds` (any when None) and not in `exclude`."""
        ...


class IndexSink:
    """Embeds and upserts into a `WeaviateIndex`; deletes by id."""

    def __init__(self, index: Any, embedder: Any) -> None:
        self.index, self.embedder = index, embedder

    def write(self, chunks: list[Chunk]) -> None:
        from ml.index.embed import embedding_text

        if chunks:
            self.index.upsert(chunks, self.embedder.embed_documents([embedding_text(c) for c in chunks]))

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            self.index.delete_ids(ids)

    def stored_ids(self, paths: list[str], kinds: tuple[str, ...] | None, exclude: tuple[str, ...] = ()) -> set[str]:
        from weaviate.classes.query import Filter

        found: set[str] = set()
        for start in range(0, len(paths), 200):
            where = Filter.by_property("path").contains_any(paths[start : start + 200])
            if kinds:
                where = where & Filter.by_property("kind").contains_any(list(kinds))
            if exclude:
                where = where & Filter.by_property("kind").contains_none(list(exclude))
            response = self.index.collection.query.fetch_objects(filters=where, limit=100_000, return_properties=[])
            found.update(str(o.uuid) for o in response.objects)
        return found


class HistoryState:
    """Sync state in the same SQLite file as the ingest state, in tables of its own."""

    def __init__(self, path: Path, corpus: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.corpus = corpus
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def commits(self) -> dict[str, tuple[list[str], list[str], bool]]:
        rows = self._db.execute(
            "SELECT sha, chunk_ids, paths, done FROM history_commits WHERE corpus = ?", (self.corpus,)
        ).fetchall()
        return {sha: (json.loads(ids), json.loads(paths), bool(done)) for sha, ids, paths, done in rows}

    def put_commits(self, rows: list[tuple[str, list[str], list[str]]], done: bool) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO history_commits VALUES (?, ?, ?, ?, ?)",
                [(self.corpus, sha, json.dumps(ids), json.dumps(paths), int(done)) for sha, ids, paths in rows],
            )

    def forget_commits(self, shas: Iterable[str]) -> None:
        with self._db:
            self._db.executemany(
                "DELETE FROM history_commits WHERE corpus = ? AND sha = ?", [(self.corpus, s) for s in shas]
            )

    def files(self) -> dict[str, tuple[str, list[str]]]:
        rows = self._db.execute(
            "SELECT path, blob, chunk_ids FROM history_files WHERE corpus = ?", (self.corpus,)
        ).fetchall()
        return {p: (b, json.loads(ids)) for p, b, ids in rows}

    def put_files(self, rows: list[tuple[str, str, list[str]]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO history_files VALUES (?, ?, ?, ?)",
                [(self.corpus, p, b, json.dumps(ids)) for p, b, ids in rows],
            )

    def forget_files(self, paths: Iterable[str]) -> None:
        with self._db:
            self._db.executemany(
                "DELETE FROM history_files WHERE corpus = ? AND path = ?", [(self.corpus, p) for p in paths]
            )

    def items(self) -> dict[int, tuple[str, list[str]]]:
        rows = self._db.execute(
            "SELECT number, updated_at, chunk_ids FROM github_items WHERE corpus = ?", (self.corpus,)
        ).fetchall()
        return {n: (u, json.loads(ids)) for n, u, ids in rows}

    def put_items(self, rows: list[tuple[int, str, list[str]]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO github_items VALUES (?, ?, ?, ?)",
                [(self.corpus, n, u, json.dumps(ids)) for n, u, ids in rows],
            )

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM history_meta WHERE key = ?", (f"{self.corpus}:{key}",)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO history_meta VALUES (?, ?)", (f"{self.corpus}:{key}", value))

    def etags(self) -> SqliteEtags:
        return SqliteEtags(self._db)

    def clear(self) -> None:
        """Forget everything recorded for this corpus (the index is being rebuilt)."""
        with self._db:
            for table in ("history_commits", "history_files", "github_items"):
                self._db.execute(f"DELETE FROM {table} WHERE corpus = ?", (self.corpus,))
            self._db.execute("DELETE FROM history_meta WHERE key LIKE ?", (f"{self.corpus}:%",))


class SqliteEtags:
    """The GitHub client's conditional-request cache, kept across runs (a dict-like view of `github_etags`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, url: str, default: Any = None) -> tuple[str, str] | None:
        row = self._db.execute("SELECT etag, body FROM github_etags WHERE url = ?", (url,)).fetchone()
        return (row[0], row[1]) if row else default

    def __setitem__(self, url: str, value: tuple[str, str]) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO github_etags VALUES (?, ?, ?)", (url, *value))


@dataclass
class SyncReport:
    """What one sync did."""

    old: str = ""
    new: str = ""
    force_push: bool = False
    files_seen: int = 0
    commits_added: int = 0
    commits_removed: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    items_synced: int = 0
    seconds: float = 0.0
    changes: list[dict[str, Any]] = field(default_factory=list)


def wanted(path: str) -> bool:
    """Files indexed as code and docs: Python and Markdown outside hidden and build directories."""
    parts = path.split("/")
    if any(p.startswith(".") or p in SKIP_DIRS for p in parts[:-1]):
        return False
    if len(parts) >= 4 and parts[0] == "docs" and parts[1] == "source" and parts[2] != "en":
        return False
    return path.endswith(CODE_SUFFIXES)


def tree(repo: Path, rev: str) -> dict[str, str]:
    """path -> blob SHA of the indexed files at `rev`."""
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "-z", rev], capture_output=True, check=True).stdout
    files = {}
    for entry in out.decode("utf-8", errors="replace").split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob" and mode != "120000" and wanted(path):
            files[path] = blob
    return files


def read_blobs(repo: Path, blobs: list[str]) -> dict[str, bytes]:
    """Contents of blobs through one `git cat-file --batch` process."""
    if not blobs:
        return {}
    proc = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input="".join(b + "\n" for b in blobs).encode(),
        capture_output=True,
        check=True,
    )
    data, out, pos = proc.stdout, {}, 0
    for blob in blobs:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        size = int(header[2])
        out[blob] = data[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
    return out


def last_touch(repo: Path, rev: str, paths: Iterable[str]) -> dict[str, str]:
    """For each path, the newest first-parent commit of `rev` that changed it (its file there equals `rev`'s)."""
    todo = set(paths)
    found: dict[str, str] = {}
    if not todo:
        return found
    cmd = ["git", "-C", str(repo), "-c", "core.quotepath=off", "log", "--first-parent", "--diff-merges=first-parent"]
    cmd += ["--no-renames", "--name-only", "--format=\x1e%H", rev, "--"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        sha = ""
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith("\x1e"):
                sha = line[1:]
            elif line in todo:
                found[line] = sha
                todo.discard(line)
                if not todo:
                    proc.kill()
                    break
    return found


def code_chunks(repo: Path, rev: str, corpus: str, owner_repo: str, files: dict[str, str]) -> dict[str, list[Chunk]]:
    """Chunks of `files` (path -> blob) at `rev`, pinned per file and annotated with blame history."""
    from ml.sources.corpus import Corpus, chunk_file

    pins = last_touch(repo, rev, files)
    contents = read_blobs(repo, sorted(set(files.values())))
    out: dict[str, list[Chunk]] = {}
    flat: list[Chunk] = []
    for path, blob in sorted(files.items()):
        pin = pins.get(path, rev)
        c = Corpus(
            name=corpus,
            root=repo,
            base=repo,
            version=pin[:12],
            commit=pin,
            ref=pin,
            repo_url=f"https://github.com/{owner_repo}",
        )
        out[path] = chunk_file(c, path, contents[blob]).chunks
        flat.extend(out[path])
    annotated = iter(annotate(flat, repo, rev))
    return {path: [next(annotated) for _ in chunks] for path, chunks in out.items()}


def touched_paths(repo: Path, shas: list[str]) -> set[str]:
    """Paths changed by these commits (both names of a rename; a merge against its first parent)."""
    out: set[str] = set()
    for group in _batches(shas, BATCH_COMMITS):
        text = git(
            repo,
            "-c",
            "core.quotepath=off",
            "log",
            "--no-walk=unsorted",
            "--diff-merges=first-parent",
            "--no-renames",
            "--name-only",
            "--format=",
            *group,
            "--",
        )
        out.update(line for line in text.splitlines() if line)
    return out


def reachable(repo: Path, rev: str) -> list[str]:
    return git(repo, "rev-list", rev).split()


def sync_git(
    repo: Path,
    sink: Sink,
    state: HistoryState,
    owner_repo: str,
    rev: str = "HEAD",
    with_diffs: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SyncReport:
    """Bring code and history chunks of `repo` from the recorded head to `rev` (from scratch when none is recorded)."""
    started = time.monotonic()
    new = resolve(repo, rev)
    old = state.get("head") or ""
    report = SyncReport(old=old, new=new)
    corpus = state.corpus
    report.force_push = bool(old) and not _is_ancestor(repo, old, new)

    recorded = state.commits()
    live = reachable(repo, new)
    live_set = set(live)
    done = {sha for sha, (_, _, d) in recorded.items() if d}
    to_add = [sha for sha in live if sha not in done]
    to_remove = [sha for sha in recorded if sha not in live_set]

    # Files whose chunks may differ from the recorded ones: content changed, or a commit that touched them entered
    # or left the history (their blame and pin changed even if the content is back to what it was).
    files_now = tree(repo, new)
    files_then = state.files()
    touched: set[str] = set()
    for sha in to_remove:
        touched.update(recorded[sha][1])
    if len(to_add) == len(live):
        touched.update(files_now)  # nothing recorded yet: every file is new
    else:
        touched.update(touched_paths(repo, to_add))
    changed = {p: b for p, b in files_now.items() if p in touched or files_then.get(p, ("",))[0] != b}
    deleted = sorted(set(files_then) - set(files_now))
    report.files_seen, report.files_changed, report.files_deleted = len(files_now), len(changed), len(deleted)

    if deleted:
        stale = sink.stored_ids(deleted, None, exclude=HISTORY_KINDS) | {i for p in deleted for i in files_then[p][1]}
        sink.delete(stale)
        report.chunks_deleted += len(stale)
        state.forget_files(deleted)
        report.changes.append({"what": "files_deleted", "paths": deleted, "ids": sorted(stale)})

    paths = sorted(changed)
    for start in range(0, len(paths), BATCH_FILES):
        group = {p: changed[p] for p in paths[start : start + BATCH_FILES]}
        chunks_by_path = code_chunks(repo, new, corpus, owner_repo, group)
        fresh = [c for p in group for c in chunks_by_path[p]]
        sink.write(fresh)
        old_ids = sink.stored_ids(list(group), None, exclude=HISTORY_KINDS)
        old_ids |= {i for p in group for i in files_then.get(p, ("", []))[1]}
        stale = old_ids - {c.id for c in fresh}
        sink.delete(stale)
        state.put_files([(p, b, [c.id for c in chunks_by_path[p]]) for p, b in group.items()])
        report.chunks_written += len(fresh)
        report.chunks_deleted += len(stale)
        report.changes.append({"what": "files_changed", "paths": list(group), "ids": [c.id for c in fresh]})
        if progress:
            progress(f"files {min(start + BATCH_FILES, len(paths))}/{len(paths)}")

    if to_remove:
        stale = {i for sha in to_remove for i in recorded[sha][0]}
        sink.delete(stale)
        state.forget_commits(to_remove)
        report.commits_removed = len(to_remove)
        report.chunks_deleted += len(stale)
        report.changes.append({"what": "commits_removed", "commits": to_remove, "ids": sorted(stale)})

    for group in _batches(to_add, BATCH_COMMITS):
        rows, chunks = [], []
        for commit, cs in history_chunks(repo, ["--no-walk=unsorted", *group], corpus, owner_repo, with_diffs):
            rows.append(
                (commit.sha, [c.id for c in cs], sorted({p for f in commit.files for p in (f.path, f.old_path) if p}))
            )
            chunks.extend(cs)
        state.put_commits(rows, done=False)  # intent first: a crash now leaves rows a later sync can clean up
        sink.write(chunks)
        state.put_commits(rows, done=True)
        report.commits_added += len(rows)
        report.chunks_written += len(chunks)
        report.changes.append({"what": "commits_added", "commits": [r[0] for r in rows], "ids": [c.id for c in chunks]})
        if progress:
            progress(f"commits {report.commits_added}/{len(to_add)}")

    state.set("head", new)
    report.seconds = time.monotonic() - started
    return report


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_ancestor(repo: Path, old: str, new: str) -> bool:
    proc = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", old, new], capture_output=True)
    return proc.returncode == 0


def sync_github(client: Any, sink: Sink, state: HistoryState, owner_repo: str) -> SyncReport:
    """Issues and PRs updated since the cursor; the cursor advances page by page, after each page is written."""
    from ml.sources.github_chunks import issue_chunks

    started = time.monotonic()
    report = SyncReport()
    known = state.items()
    cursor = state.get("github_since")
    for page in client.issue_pages(since=cursor):
        chunks: list[Chunk] = []
        rows = []
        stale: set[str] = set()
        for item in page:
            number = int(item["number"])
            comments = client.issue_comments(number) if item.get("comments") else []
            if "pull_request" in item:
                made = issue_chunks(
                    state.corpus,
                    owner_repo,
                    item,
                    comments,
                    pull=client.pull(number),
                    review_comments=client.review_comments(number),
                    reviews=client.reviews(number),
                )
            else:
                made = issue_chunks(state.corpus, owner_repo, item, comments)
            chunks.extend(made)
            stale |= set(known.get(number, ("", []))[1]) - {c.id for c in made}
            rows.append((number, item["updated_at"], [c.id for c in made]))
        sink.write(chunks)
        sink.delete(stale)
        state.put_items(rows)
        if rows:
            state.set("github_since", max(r[1] for r in rows))
        report.items_synced += len(rows)
        report.chunks_written += len(chunks)
        report.chunks_deleted += len(stale)
        report.changes.append({"what": "items_updated", "numbers": [r[0] for r in rows], "ids": [c.id for c in chunks]})
    report.seconds = time.monotonic() - started
    return report


def append_staging(path: Path, report: SyncReport, source: str) -> int:
    """Append one JSON line per change to the staging buffer the QA-dataset pipeline reads; returns lines written."""
    if not report.changes:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    with path.open("a", encoding="utf-8") as fh:
        for change in report.changes:
            fh.write(json.dumps({"source": source, "at": when, "from": report.old, "to": report.new, **change}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return len(report.changes)


def fetch(repo: Path, remote: str, branch: str) -> str:
    """`git fetch <remote> <branch>` and the SHA it points to now."""
    git(repo, "fetch", "--quiet", remote, branch)
    return git(repo, "rev-parse", f"{remote}/{branch}").strip()


def owner_repo_of(repo: Path, default: str) -> str:
    """`owner/name` of the checkout's GitHub origin, or `default` when origin is elsewhere or missing."""
    url = git(repo, "remote", "get-url", "origin", check=False).strip().removesuffix(".git")
    for prefix in ("https://github.com/", "git@github.com:"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return default


class Syncer:
    """One checkout (and optionally its GitHub repository) kept in sync with one index; reused by `watch`."""

    def __init__(
        self,
        repo: Path,
        sink: Sink,
        state: HistoryState,
        owner_repo: str,
        github: Any = None,
        staging: Path | None = None,
        meta: Any = None,
    ) -> None:
        self.repo, self.sink, self.state, self.owner_repo = repo, sink, state, owner_repo
        self.github, self.staging, self.meta = github, staging, meta

    def run(self, rev: str = "HEAD", progress: Callable[[str], None] | None = None) -> list[SyncReport]:
        reports = [sync_git(self.repo, self.sink, self.state, self.owner_repo, rev, progress=progress)]
        if self.meta is not None:
            # What `tqa status` shows, in the same rows a plain `tqa ingest` writes.
            self.meta.set_meta(
                {
                    "corpus_version": reports[0].new[:12],
                    "commit": reports[0].new,
                    "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        if self.staging:
            append_staging(self.staging, reports[0], "git")
        if self.github is not None:
            reports.append(sync_github(self.github, self.sink, self.state, self.owner_repo))
            if self.staging:
                append_staging(self.staging, reports[1], "github")
        return reports

    def watch(
        self,
        remote: str,
        branch: str,
        interval: float,
        iterations: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_report: Callable[[list[SyncReport]], None] | None = None,
    ) -> None:
        """Poll: fetch the remote branch, sync to it, sleep `interval` seconds; `iterations` bounds it (tests)."""
        n = 0
        while iterations is None or n < iterations:
            started = time.monotonic()
            reports = self.run(fetch(self.repo, remote, branch))
            if on_report:
                on_report(reports)
            n += 1
            if iterations is None or n < iterations:
                sleep(max(0.0, interval - (time.monotonic() - started)))


def open_syncer(
    stack: ExitStack, settings: Any, path: Path, github: bool | None = None, rebuild: bool = False
) -> Syncer:
    """A `Syncer` for the checkout at `path` and the configured index; what it opens is closed by `stack`.

    `tqa sync`, `tqa watch` and `tqa ingest --path <git checkout>` all come through here, so they build the same
    index. The ingest state records corpus, embedding model and chunker version like a plain ingest does, and the
    same checks refuse a data dir built for another corpus or model.

    Raises:
        UserError: `path` is not a git checkout, GitHub is wanted without a token, or the data dir is incompatible.
    """
    from ml.errors import UserError
    from ml.index.embed import Embedder
    from ml.index.ingest import _check_compatible
    from ml.index.state import IngestState
    from ml.index.weaviate_index import WeaviateIndex
    from ml.sources.corpus import CHUNKER_VERSION, resolve_corpus

    repo = path.resolve()
    resolve(repo)  # a clear error for a path that is not a checkout
    if github is None:
        github = settings.github_token is not None
    token = settings.github_token.get_secret_value() if settings.github_token else None
    if github and settings.github_api_url == "https://api.github.com" and not token:
        raise UserError("Syncing GitHub issues needs TQA_GITHUB_TOKEN (or pass --no-github).")
    meta = IngestState(settings.state_db)
    stack.callback(meta.close)
    state = HistoryState(settings.state_db, repo.name)
    stack.callback(state.close)
    embedder = Embedder(settings.embedding_model, settings.embedding_device, settings.embedding_batch_size)
    index = stack.enter_context(WeaviateIndex.open(settings))
    if rebuild:
        index.drop()
        meta.clear()
        state.clear()
    _check_compatible(meta, resolve_corpus(path=repo), embedder)
    if meta.get_meta("chunker_version") not in (None, CHUNKER_VERSION):
        # Chunks of unchanged files would differ from what the current chunker makes: re-chunk every file.
        state.forget_files(list(state.files()))
    index.ensure_collection()
    meta.set_meta(
        {
            "corpus": repo.name,
            "embedding_model": embedder.model_name,
            "root": str(repo),
            "chunker_version": CHUNKER_VERSION,
        }
    )
    client = None
    if github:
        from ml.sources.github import GitHubClient

        client = stack.enter_context(
            GitHubClient(settings.github_repo, token=token, api_url=settings.github_api_url, etags=state.etags())
        )
    owner_repo = owner_repo_of(repo, settings.github_repo)
    return Syncer(repo, IndexSink(index, embedder), state, owner_repo, client, settings.staging_file, meta=meta)
