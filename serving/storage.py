"""A full disk behind a route that writes: 507 with one sentence, instead of a 500 and a traceback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path

import bentoml

from ml.errors import disk_full


class InsufficientStorage(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.INSUFFICIENT_STORAGE


@contextmanager
def stored(data_dir: Path) -> Iterator[None]:
    """Run a write under `data_dir`; a full disk (`ml.errors.disk_full`) becomes `InsufficientStorage` saying that
    nothing was stored and the request can be sent again, every other error passes unchanged."""
    try:
        yield
    except Exception as exc:
        if not disk_full(exc):
            raise
        try:
            free = f"{shutil.disk_usage(data_dir).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        raise InsufficientStorage(
            f"The service's disk is full ({free}), so nothing was stored; send the request again once space is freed."
        ) from exc
