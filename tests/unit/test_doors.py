"""Doors middleware around a minimal ASGI app: keys, buckets, size limits (real service: test_isolation_lifecycle)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import SecretStr

from ml.settings import Settings
from serving.doors import Doors, TokenBuckets, key_matches, protect


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def call(doors: Doors, path: str, headers: dict[str, str] | None = None, chunks: list[bytes] | None = None) -> tuple:
    chunks = chunks or [b""]
    sent: list[dict[str, Any]] = []
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "path": path, "headers": raw, "client": ("127.0.0.9", 1234)}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(doors(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), sent[1]["body"]


def test_keys_compare_every_configured_key_and_refuse_without_keys() -> None:
    assert key_matches("b", [b"a", b"b"])
    assert not key_matches("c", [b"a", b"b"])
    assert not key_matches("a", [])
    assert not key_matches(None, [b"a"])


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("x") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("x") == 0.5
    assert buckets.take("y") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert buckets.take("x") == 0.0


def test_protected_route_needs_a_key_and_never_echoes_it() -> None:
    protect("/things")
    doors = Doors(_app, Settings(api_keys=SecretStr("s3cret-key")))
    status, _, body = call(doors, "/things/1", {"X-API-Key": "wrong-key"})
    assert status == 401 and b"wrong-key" not in body and b"s3cret" not in body
    assert call(doors, "/things/1", {"Authorization": "Bearer s3cret-key"})[0] == 200
    assert call(doors, "/thingsmore")[0] == 200  # a prefix match is per path segment


def test_rate_limit_answers_429_with_retry_after() -> None:
    doors = Doors(_app, Settings(rate_limit_per_minute=60, rate_limit_burst=2))
    assert [call(doors, "/ask")[0] for _ in range(2)] == [200, 200]
    status, headers, body = call(doors, "/ask")
    assert status == 429 and headers[b"retry-after"] == b"1"
    assert json.loads(body)["error"].startswith("Too many requests")
    assert call(doors, "/healthz")[0] == 200  # only the limited routes


def test_body_limit_by_header_and_by_counted_chunks() -> None:
    doors = Doors(_app, Settings(max_request_bytes=1024))
    assert call(doors, "/search", {"Content-Length": "2048"})[0] == 413
    assert call(doors, "/search", chunks=[b"x" * 600, b"x" * 600])[0] == 413
    assert call(doors, "/search", chunks=[b"x" * 600])[0:3:2] == (200, b"600")


def test_json_routes_refuse_other_content_types() -> None:
    doors = Doors(_app, Settings())

    def post(content_type: str) -> int:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/ask",
            "headers": [(b"content-type", content_type.encode())],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(doors(scope, receive, send))
        return int(sent[0]["status"])

    assert post("text/plain") == 415
    assert post("application/json; charset=utf-8") == 200
