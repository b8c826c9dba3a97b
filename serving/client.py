"""Finds a running `tqa serve` for this data dir and talks to it, so the CLI skips model and index start-up."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from ml.errors import UserError
from ml.settings import Settings


def server_file(settings: Settings) -> Path:
    return settings.data_dir / "server.json"


def find_server(settings: Settings) -> str | None:
    """URL of a ready `tqa serve` recorded in the data dir, or None."""
    path = server_file(settings)
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
        response = httpx.get(f"{info['url']}/readyz", timeout=1.0)
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None
    return str(info["url"]) if response.status_code == 200 else None


# Answers that mean "not now" rather than "no": the server is restarting, overloaded or behind a proxy that lost it.
RETRYABLE = {429, 502, 503, 504}


def post(url: str, route: str, payload: dict[str, Any], timeout: float = 30.0, retry_s: float = 0.0) -> dict[str, Any]:
    """POST to the service; its 4xx messages become UserErrors.

    With `retry_s` > 0 a refused or broken connection, a 429 or a 502-504 is retried with backoff (honouring
    Retry-After) for up to `retry_s` seconds, as when `tqa serve` restarts. Every route is safe to repeat: /ask and
    /search only read, and a repeated rating of an answer replaces itself.
    """
    deadline = time.monotonic() + retry_s
    pause = 0.25
    while True:
        try:
            response = httpx.post(f"{url}{route}", json=payload, timeout=timeout)
        except httpx.TransportError:
            if time.monotonic() + pause > deadline:
                raise
            wait = pause
        else:
            if response.status_code not in RETRYABLE or time.monotonic() + pause > deadline:
                break
            wait = _retry_after(response, pause)
        time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
        pause = min(pause * 2, 4.0)
    if 400 <= response.status_code < 500:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise UserError(str(message))
    response.raise_for_status()
    return dict(response.json())


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return float(response.headers.get("retry-after", default))
    except ValueError:
        return default
