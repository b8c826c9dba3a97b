"""`tqa sync` of a git checkout: its code at a commit and its history, incrementally, through the ingest engine.

The index after `sync_git(rev)` equals a from-scratch sync of `rev` into an empty index: code chunks come from the
blobs at `rev` (`ml.sources.git_checkout`), and commit and diff chunks exist for every commit reachable from `rev`.

Crash safety: a state row is written only after the index write it describes succeeded (commit rows are written
first as intent, marked done after), and the recorded head advances last. Killing a sync at any point and running it
again converges to the same index without duplicates, because ids are deterministic and stale ids are computed from
the index and the state, not from the interrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ml.index.engine import IngestReport, Sink, index_files, write_chunks
from ml.index.state import StateStore
from ml.sources.git_checkout import CheckoutSource, reachable, touched_paths
from ml.sources.git_history import branch_links, history_chunks, is_ancestor, resolve
from ml.sources.selection import DEFAULT_DOC_LANGUAGES
from ml.types import Chunk

# Commits whose chunks are embedded and written together; their state rows are written around that one write.
BATCH_COMMITS = 500


def sync_git(
    repo: Path,
    sink: Sink,
    state: StateStore,
    owner_repo: str,
    rev: str = "HEAD",
    with_diffs: bool = True,
    progress: Callable[[str], None] | None = None,
    doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES,
) -> IngestReport:
    """Bring code and history chunks of `repo` from the recorded head to `rev` (from scratch when none is recorded)."""
    started = time.monotonic()
    new = resolve(repo, rev)
    old = state.get("head") or ""
    report = IngestReport(old=old, new=new, force_push=bool(old) and not is_ancestor(repo, old, new))

    recorded = state.commits()
    live = reachable(repo, new)
    live_set = set(live)
    done = {sha for sha, (_, _, d) in recorded.items() if d}
    to_add = [sha for sha in live if sha not in done]
    to_remove = [sha for sha in recorded if sha not in live_set]

    # Files whose chunks may differ from the recorded ones although their content did not change: a commit that
    # touched them entered or left the history, so their blame and pin changed. Nothing recorded: every file.
    touched: set[str] | None = None
    if len(to_add) != len(live):
        touched = touched_paths(repo, to_add)
        for sha in to_remove:
            touched.update(recorded[sha][1])

    def file_progress(done_files: int, total: int, _chunks: int) -> None:
        if progress and done_files:
            progress(f"files {done_files}/{total}")

    source = CheckoutSource(repo, new, state.corpus, owner_repo, doc_languages)
    index_files(source, sink, state, report, force=touched, progress=file_progress)

    if to_remove:
        stale = {i for sha in to_remove for i in recorded[sha][0]}
        report.chunks_deleted += sink.delete(stale)
        state.forget_commits(to_remove)
        report.commits_removed = len(to_remove)
        report.changes.append({"what": "commits_removed", "commits": to_remove, "ids": sorted(stale)})

    # Branch commits take the PR of the merge that brought them in; only merges being added are expanded.
    merged = branch_links(repo, new, wanted=set(to_add)) if to_add else {}
    for start in range(0, len(to_add), BATCH_COMMITS):
        group = to_add[start : start + BATCH_COMMITS]
        rows: list[tuple[str, list[str], list[str]]] = []
        chunks: list[Chunk] = []
        for commit, made in history_chunks(
            repo, ["--no-walk=unsorted", *group], state.corpus, owner_repo, with_diffs, merged
        ):
            paths = sorted({p for f in commit.files for p in (f.path, f.old_path) if p})
            rows.append((commit.sha, [c.id for c in made], paths))
            chunks.extend(made)
        state.put_commits(rows, done=False)  # intent first: a crash now leaves rows a later sync can clean up
        write_chunks(sink, chunks)
        state.put_commits(rows, done=True)
        report.commits_added += len(rows)
        report.chunks_written += len(chunks)
        report.changes.append({"what": "commits_added", "commits": [r[0] for r in rows], "ids": [c.id for c in chunks]})
        if progress:
            progress(f"commits {report.commits_added}/{len(to_add)}")

    state.set("head", new)
    report.seconds = time.monotonic() - started
    return report
