"""Errors a user can fix; the CLI prints them as one sentence, without a traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake or missing prerequisite the user can fix; the message says what to do."""


class NoIndexError(UserError):
    """The data dir has no index yet."""

    def __init__(self, data_dir: Path | str):
        super().__init__(f"No index in {data_dir}; run `tqa ingest` first.")


def disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, says a disk is full: an OSError ENOSPC or EDQUOT, SQLite's
    "database or disk is full", or a server's (Weaviate's) "no space left on device" passed on as text."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current).lower()
        if "no space left on device" in text or "database or disk is full" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_message(data_dir: Path) -> str:
    """One sentence for a full disk under `data_dir`: how much is free, and that running the command again is safe."""
    import shutil

    try:
        free = f"{shutil.disk_usage(data_dir).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return (
        f"The disk holding the data dir {data_dir} is full ({free}); free some space and run the command again: "
        "what was completed is kept and the rest is redone."
    )
