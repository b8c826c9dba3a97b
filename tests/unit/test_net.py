"""`wait_until_ready`: returns on the first 200, fails at once when the child dies, and says so on a timeout."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ml.net import NotReady, wait_until_ready
from tests.support.loopback import serving
from tests.support.ports import free_port


@pytest.fixture
def warming_up() -> Iterator[tuple[str, list[int]]]:
    """A server whose /readyz answers 503 twice, then 200; yields its URL and the statuses it sent."""
    sent: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            status = 503 if len(sent) < 2 else 200
            sent.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield f"{url}/readyz", sent


def test_returns_once_the_url_answers_200(warming_up: tuple[str, list[int]]) -> None:
    url, sent = warming_up
    wait_until_ready(url, timeout_s=60, interval_s=0.01)
    assert sent == [503, 503, 200]


def test_a_child_that_exits_fails_at_once_with_its_code_and_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", "print('port already in use'); raise SystemExit(3)"], stdout=out
        )
    child.wait()
    url = f"http://127.0.0.1:{free_port()}/readyz"
    with pytest.raises(NotReady, match=r"exited with code 3(.|\n)*port already in use"):
        wait_until_ready(url, timeout_s=30, process=child, log=log)


def test_nothing_listening_is_a_clear_timeout() -> None:
    url = f"http://127.0.0.1:{free_port()}/readyz"
    with pytest.raises(NotReady, match=rf"^{url} did not answer 200 within 0 s\.$"):
        wait_until_ready(url, timeout_s=0.2, interval_s=0.05)
