"""A full disk behind a route that writes answers 507 with one sentence; other errors pass unchanged."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from serving.storage import InsufficientStorage, stored


@pytest.mark.parametrize(
    "error",
    [sqlite3.OperationalError("database or disk is full"), OSError(errno.ENOSPC, "No space left on device")],
)
def test_a_full_disk_becomes_507_with_one_sentence(tmp_path: Path, error: Exception) -> None:
    with pytest.raises(InsufficientStorage) as raised, stored(tmp_path):
        raise error
    assert raised.value.error_code == 507
    message = str(raised.value)
    assert message.count(". ") == 0 and "disk is full" in message and "MiB free" in message
    assert raised.value.__cause__ is error


def test_other_errors_pass_unchanged(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError, match="database is locked"), stored(tmp_path):
        raise sqlite3.OperationalError("database is locked")
    with stored(tmp_path):
        pass
