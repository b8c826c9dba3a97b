"""Finds a running `tqa serve` for this data dir and talks to it, so the CLI skips model and index start-up."""

from __future__ import annotations

import json
import os
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


def post(url: str, route: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """POST to the service; its 4xx messages become UserErrors."""
    response = httpx.post(f"{url}{route}", json=payload, timeout=timeout)
    if 400 <= response.status_code < 500:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise UserError(str(message))
    response.raise_for_status()
    return dict(response.json())
