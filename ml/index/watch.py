"""A checkout (and optionally its GitHub repository) kept in step with one index: one sync, or a polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml.index.engine import IngestReport, Sink, finish
from ml.index.git_sync import sync_git
from ml.index.github_sync import sync_github
from ml.index.staging import append_staging
from ml.index.state import StateStore
from ml.sources.git_checkout import fetch
from ml.sources.selection import DEFAULT_DOC_LANGUAGES


class Syncer:
    """Syncs the checkout, then GitHub; appends each change to the staging buffer; reused by `watch`."""

    def __init__(
        self,
        repo: Path,
        sink: Sink,
        state: StateStore,
        owner_repo: str,
        github: Any = None,
        staging: Path | None = None,
        index: Any = None,
        doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES,
    ) -> None:
        self.repo, self.sink, self.state, self.owner_repo = repo, sink, state, owner_repo
        self.github, self.staging, self.index, self.doc_languages = github, staging, index, doc_languages

    def run(self, rev: str = "HEAD", progress: Callable[[str], None] | None = None) -> list[IngestReport]:
        reports = [
            sync_git(
                self.repo,
                self.sink,
                self.state,
                self.owner_repo,
                rev,
                progress=progress,
                doc_languages=self.doc_languages,
            )
        ]
        finish(self.state, reports[0].new[:12], reports[0].new)
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
        on_report: Callable[[list[IngestReport]], None] | None = None,
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
