"""The runner probe against a real loopback HTTP server, and how /healthz gains the `runner` object."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from ml.settings import Settings
from serving import runner_health
from serving.runner_health import RunnerHealth, RunnerProbe, start_runner_probe
from tests.support.loopback import serving
from tests.support.ports import free_port


class _Models(BaseHTTPRequestHandler):
    status = 200
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        body = b'{"object": "list", "data": []}'
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def models_server() -> Iterator[tuple[str, type[_Models]]]:
    handler = type("Handler", (_Models,), {"status": 200, "seen": []})
    with serving(handler) as url:
        yield f"{url}/v1", handler


class _Breaker:
    state = "open"


def _settings(url: str, **extra: Any) -> Settings:
    return Settings(answerer="llm", llm_url=url, llm_connect_timeout_s=1.0, **extra)


def test_probe_asks_the_model_list_with_the_key_and_tracks_transitions(
    models_server: tuple[str, type[_Models]],
) -> None:
    url, handler = models_server
    probe = RunnerProbe(_settings(url, llm_api_key="k-123"), interval_s=60, breaker=_Breaker())
    try:
        assert probe.check() is True
        assert handler.seen == [("/v1/models", "Bearer k-123")]
        up = probe.report()
        assert up["up"] is True and up["error"] is None and up["url"] == url and up["circuit"] == "open"
        handler.status = 503
        assert probe.check() is False
        down = probe.report()
        assert down["up"] is False and down["error"] == "HTTP 503" and down["since"] is not None
    finally:
        probe.stop()


def test_probe_of_a_closed_port_is_down_with_the_reason() -> None:
    probe = RunnerProbe(_settings(f"http://127.0.0.1:{free_port()}/v1"), interval_s=60)
    try:
        assert probe.check() is False
        assert probe.report()["error"] == "ConnectError" and "circuit" not in probe.report()
    finally:
        probe.stop()


def test_no_probe_without_an_llm_answerer() -> None:
    assert start_runner_probe(Settings()) is None


def _call(app: Any, path: str = "/healthz", method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": method, "headers": []}
    asyncio.run(RunnerHealth(app)(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start.get("headers", [])), body


def _inner(body: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture()
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunnerProbe]:
    made = RunnerProbe(_settings(f"http://127.0.0.1:{free_port()}/v1"), interval_s=60)
    made.check()
    monkeypatch.setattr(runner_health, "_probe", made)
    yield made
    made.stop()


def test_healthz_of_bentoml_becomes_json_with_the_runner(probe: RunnerProbe) -> None:
    status, headers, body = _call(_inner(b"\n", [(b"content-type", b"text/plain; charset=utf-8")]))
    assert status == 200 and headers[b"content-type"] == b"application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["runner"]["up"] is False
    assert int(headers[b"content-length"]) == len(body)


def test_healthz_of_a_release_keeps_its_version_and_headers(probe: RunnerProbe) -> None:
    release = json.dumps({"status": "ok", "version": "7", "alias": "canary"}).encode()
    inner = _inner(release, [(b"content-type", b"application/json"), (b"x-tqa-version", b"7")])
    status, headers, body = _call(inner)
    health = json.loads(body)
    assert health["version"] == "7" and health["alias"] == "canary" and health["runner"]["error"] == "ConnectError"
    assert headers[b"x-tqa-version"] == b"7"


def test_other_routes_and_no_probe_pass_through(probe: RunnerProbe, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _call(_inner(b"\n", []), path="/readyz")[2] == b"\n"
    monkeypatch.setattr(runner_health, "_probe", None)
    assert _call(_inner(b"\n", []))[2] == b"\n"
