"""Errors a user can fix; the CLI prints them as one sentence, without a traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake or missing prerequisite the user can fix; the message says what to do."""


class NoIndexError(UserError):
    """The data dir has no index yet."""

    def __init__(self, data_dir: Path | str):
        super().__init__(f"No index in {data_dir}; run `tqa ingest` first.")
