"""Code linked to history: the commits that last changed each code chunk's lines, from one `git blame` per file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ml.sources.git_history import history_ref, parse_pr
from ml.types import Chunk

# How many commits a chunk remembers, most recent first.
HISTORY_DEPTH = 3


@dataclass(frozen=True)
class BlameCommit:
    sha: str
    time: int
    pr: int | None


@dataclass
class FileBlame:
    """Per line (1-based, index 0 unused) the commit that last changed it."""

    lines: list[BlameCommit | None]

    def recent(self, start: int, end: int, depth: int = HISTORY_DEPTH) -> list[str]:
        """The `depth` most recent commits that touched lines [start, end], as `sha` or `sha#pr`."""
        seen: dict[str, BlameCommit] = {}
        for c in self.lines[max(start, 1) : min(end, len(self.lines) - 1) + 1]:
            if c is not None:
                seen[c.sha] = c
        ordered = sorted(seen.values(), key=lambda c: (-c.time, c.sha))
        return [history_ref(c.sha, c.pr) for c in ordered[:depth]]


def blame_file(repo: Path, rev: str, path: str) -> FileBlame:
    """Parse `git blame --porcelain <rev> -- <path>` into a line -> commit table."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "blame", "--porcelain", rev, "--", path], capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git blame {rev} -- {path} failed: {proc.stderr.decode(errors='replace').strip()}")
    return parse_porcelain(proc.stdout.decode("utf-8", errors="replace"))


def parse_porcelain(text: str) -> FileBlame:
    """Porcelain blame: a `<sha> <orig> <final> [<n>]` header per line, commit details on first sight."""
    commits: dict[str, dict[str, str]] = {}
    line_sha: dict[int, str] = {}
    current: str | None = None
    final = 0
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] == "\t":
            if current is not None:
                line_sha[final] = current
            continue
        head = line.split(" ")
        if len(head[0]) == 40 and len(head) >= 3 and head[1].isdigit() and head[2].isdigit():
            current, final = head[0], int(head[2])
            commits.setdefault(current, {})
        elif current is not None:
            key, _, value = line.partition(" ")
            commits[current].setdefault(key, value)
    resolved = {
        sha: BlameCommit(sha, int(info.get("committer-time", "0")), parse_pr(info.get("summary", "")))
        for sha, info in commits.items()
    }
    n = max(line_sha, default=0)
    table: list[BlameCommit | None] = [None] * (n + 1)
    for i, sha in line_sha.items():
        table[i] = resolved[sha]
    return FileBlame(table)


def blame_files(repo: Path, rev: str, paths: Iterable[str], workers: int | None = None) -> dict[str, FileBlame]:
    """Blame many files in parallel (each is one git process, so threads are enough)."""
    paths = list(dict.fromkeys(paths))
    workers = workers or max(2, (os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(paths, pool.map(lambda p: blame_file(repo, rev, p), paths), strict=True))


def annotate(
    chunks: list[Chunk], repo: Path, rev: str, path_of: dict[str, str] | None = None, depth: int = HISTORY_DEPTH
) -> list[Chunk]:
    """Fill `history` of code and doc chunks with the most recent commits touching their lines at `rev`.

    Args:
        chunks: Chunks of files in the checkout (history chunks are passed through unchanged).
        repo: The checkout.
        rev: The commit the chunks were made from.
        path_of: Maps a chunk's `path` to its path inside the repository when they differ (corpus prefix).
        depth: How many commits to keep per chunk.
    """
    path_of = path_of or {}
    wanted = [c for c in chunks if c.kind not in ("commit", "diff", "issue", "pr") and c.start_line > 0]
    blames = blame_files(repo, rev, [path_of.get(c.path, c.path) for c in wanted])
    wanted_ids = {id(c) for c in wanted}
    out = []
    for c in chunks:
        if id(c) in wanted_ids:
            blame = blames[path_of.get(c.path, c.path)]
            c = c.model_copy(update={"history": blame.recent(c.start_line, c.end_line, depth)})
        out.append(c)
    return out
