"""A full disk is recognised however it surfaces: OSError, SQLite, or a server's message; other errors are not."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from ml.errors import disk_full, disk_full_message


def raised_from(inner: BaseException) -> RuntimeError:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("Weaviate rejected 3 of 5 objects") from exc
    except RuntimeError as outer:
        return outer


def test_full_disk_is_recognised_through_the_chain_of_causes() -> None:
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(raised_from(sqlite3.OperationalError("database or disk is full")))
    assert disk_full(RuntimeError("first error: write /d/proplengths.tmp: no space left on device"))


def test_other_errors_are_not_a_full_disk() -> None:
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not disk_full(raised_from(ConnectionError("index went away")))


def test_the_message_names_the_data_dir_and_what_is_free(tmp_path: Path) -> None:
    message = disk_full_message(tmp_path)
    assert str(tmp_path) in message and "MiB free" in message and "run the command again" in message
