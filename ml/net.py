"""Waiting for a local HTTP service to become ready: one loop for every server the project or its tests start."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any


class NotReady(RuntimeError):
    """A service did not answer 200 in time, or its process exited first; the message says which."""


def wait_until_ready(
    url: str,
    timeout_s: float,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
    interval_s: float = 0.25,
) -> None:
    """Poll `url` until it answers 200.

    Args:
        url: the readiness URL itself, e.g. ``http://127.0.0.1:3000/readyz``.
        timeout_s: how long to wait before giving up.
        process: the child serving `url`; if it exits, this fails at once with its exit code instead of waiting
            out the timeout.
        log: the child's log file; its tail is added to the error.
        interval_s: pause between attempts.

    Raises:
        NotReady: the process exited, or `url` did not answer 200 within `timeout_s`.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise NotReady(f"The process serving {url} exited with code {process.returncode}{_tail(log)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet, or busy loading
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotReady(f"{url} did not answer 200 within {timeout_s:.0f} s{_tail(log)}")
        time.sleep(min(interval_s, remaining))


def _tail(log: Path | None, chars: int = 2000) -> str:
    if log is None or not log.exists():
        return "."
    return f"; the end of {log}:\n{log.read_text(errors='replace')[-chars:]}"
