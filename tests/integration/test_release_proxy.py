"""The release proxy for real: HAProxy from `ops/release/haproxy.cfg.j2` in front of two stand-in slots on 127.0.0.1.

Weight changes under a steady stream of new users never leave a request without a server, and a question a slot drops
without answering is asked again of the other slot, while feedback is never sent twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from ops.release.proxy import Haproxy, Slot
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


class _Slot(BaseHTTPRequestHandler):
    """Answers /readyz and POSTs with its name; a `drops` slot reads a POST and closes without a byte of answer."""

    name = ""
    drops = False
    seen: Counter[str] = Counter()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._answer(b"ok")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen[self.path] += 1
        if self.drops:
            self.close_connection = True
            return
        self._answer(self.name.encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Slot", self.name)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _slot(name: str, drops: bool = False) -> ThreadingHTTPServer:
    handler = type(name, (_Slot,), {"name": name, "drops": drops, "seen": Counter()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _address(server: ThreadingHTTPServer) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Haproxy]:
    haproxy = Haproxy(tmp_path, free_port())
    try:
        yield haproxy
    finally:
        haproxy.stop()


def _wait_up(proxy: Haproxy, names: set[str]) -> None:
    """Until HAProxy's health checks have found every named server up (they start a few hundred ms apart)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stat = [line.split(",") for line in proxy.command("show stat").splitlines() if line.startswith("tqa,")]
        if {f[1] for f in stat if f[17].startswith("UP")} >= names:
            return
        time.sleep(0.1)
    raise AssertionError(f"HAProxy never saw {names} up: {proxy.command('show stat')}")


def test_moving_all_traffic_between_slots_never_leaves_a_request_without_a_server(proxy: Haproxy) -> None:
    """The canary step to 100% (production to weight 0 while the canary leaves maintenance) and the rollback,
    40 times each, under users who each open a new session: every request is answered."""
    blue, green = _slot("blue"), _slot("green")
    production = [Slot("blue", _address(blue), 100, False), Slot("green", _address(green), 0, True)]
    all_in = [Slot("blue", _address(blue), 0, False), Slot("green", _address(green), 100, False)]
    proxy.start(production)
    proxy.apply(all_in)
    _wait_up(proxy, {"blue", "green"})
    proxy.apply(production)

    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def user() -> None:
        while not stop.is_set():
            try:
                statuses[httpx.post(f"{proxy.url}/ask", json={"question": "q"}, timeout=5).status_code] += 1
            except httpx.HTTPError:
                statuses[0] += 1

    users = [threading.Thread(target=user, daemon=True) for _ in range(4)]
    for thread in users:
        thread.start()
    for _ in range(40):
        proxy.apply(all_in)
        time.sleep(0.02)
        proxy.apply(production)
        time.sleep(0.02)
    stop.set()
    for thread in users:
        thread.join(timeout=10)
    assert sum(statuses.values()) >= 50 and set(statuses) == {200}, statuses


def test_a_question_a_slot_drops_is_answered_by_the_other_and_feedback_is_never_sent_twice(proxy: Haproxy) -> None:
    dropping, answering = _slot("dropping", drops=True), _slot("answering")
    slots = [Slot("dropping", _address(dropping), 50, False), Slot("answering", _address(answering), 50, False)]
    proxy.start(slots)
    _wait_up(proxy, {"dropping", "answering"})

    asked = [httpx.post(f"{proxy.url}/ask", json={"question": "q"}, timeout=10) for _ in range(10)]
    assert [r.status_code for r in asked] == [200] * 10
    assert {r.headers["x-slot"] for r in asked} == {"answering"}
    assert dropping.RequestHandlerClass.seen["/ask"] >= 3  # roughly half went there first and were asked again

    failed = 0
    for _ in range(10):
        try:
            response = httpx.post(f"{proxy.url}/feedback", json={"rating": 1}, timeout=10)
            failed += response.status_code != 200
        except httpx.HTTPError:
            failed += 1
    sent_to_dropper = dropping.RequestHandlerClass.seen["/feedback"]
    sent_to_answerer = answering.RequestHandlerClass.seen["/feedback"]
    # Each feedback reached exactly one slot once: the ones the dropping slot took failed rather than being replayed.
    assert sent_to_dropper + sent_to_answerer == 10
    assert failed == sent_to_dropper > 0
