"""Sync of GitHub issues and PRs (threads, reviews, review comments) into the index, from a crash-safe cursor."""

from __future__ import annotations

import time
from typing import Any

from ml.index.engine import IngestReport, Sink, write_chunks
from ml.index.state import StateStore
from ml.types import Chunk


def sync_github(client: Any, sink: Sink, state: StateStore, owner_repo: str) -> IngestReport:
    """Issues and PRs updated since the cursor; the cursor advances page by page, after each page is written."""
    from ml.sources.github_chunks import issue_chunks

    started = time.monotonic()
    report = IngestReport()
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
        write_chunks(sink, chunks)
        report.chunks_deleted += sink.delete(stale)
        state.put_items(rows)
        if rows:
            state.set("github_since", max(r[1] for r in rows))
        report.items_synced += len(rows)
        report.chunks_written += len(chunks)
        report.changes.append({"what": "items_updated", "numbers": [r[0] for r in rows], "ids": [c.id for c in chunks]})
    report.seconds = time.monotonic() - started
    return report
