"""Doors of the HTTP API: API keys for write and admin routes, per-client rate limits, request size limits.

`Doors` is an ASGI middleware added to the BentoML service (`RAGService.add_asgi_middleware(Doors)`):
- every request body larger than TQA_MAX_REQUEST_BYTES is refused with 413, and a POST to a JSON route with another
  Content-Type with 415 (BentoML answered those with 500);
- routes under a protected prefix (`PROTECTED_PREFIXES`, plus any route a module adds with `protect("/path")`)
  need one of TQA_API_KEYS in `X-API-Key` or `Authorization: Bearer`, compared in constant time; without keys
  configured they refuse everyone (401);
- rate-limited routes (`/ask`, `/search`, `/feedback`, and those added with `rate_limit("/path")`) get a token
  bucket per client (its API key when it sends a valid one, else its IP): over it, 429 with Retry-After.
Buckets live in each worker process, so with N workers a client may get up to N times the rate.
Keys are never logged or echoed; a request's key is reduced to a hash prefix before it names a bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ml.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIXES: set[str] = {"/admin", "/reindex", "/release"}
RATE_LIMITED: set[str] = {"/ask", "/search", "/feedback"}
MAX_CLIENTS = 10_000


def protect(route: str) -> None:
    """Require an API key on `route` (and everything under it); call at import time of the service module."""
    PROTECTED_PREFIXES.add(route.rstrip("/") or "/")


def rate_limit(route: str) -> None:
    """Apply the per-client rate limit to `route` (exact path)."""
    RATE_LIMITED.add(route)


def configured_keys(settings: Settings) -> list[bytes]:
    raw = settings.api_keys.get_secret_value() if settings.api_keys else ""
    return [k.strip().encode() for k in raw.split(",") if k.strip()]


def key_matches(presented: str | None, keys: list[bytes]) -> bool:
    """Constant-time comparison against every configured key (no early exit on the first match)."""
    if not presented or not keys:
        return False
    candidate = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


def presented_key(headers: dict[str, str]) -> str | None:
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def is_protected(path: str) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in PROTECTED_PREFIXES)


class TokenBuckets:
    """One token bucket per client: `rate` tokens per second, at most `burst`; the least recently seen are evicted."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 if the request may pass (a token is spent), else the seconds until a token is available."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
            return wait


class _TooLarge(Exception):
    pass


class Doors:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or Settings()
        self.keys = configured_keys(self.settings)
        self.max_bytes = self.settings.max_request_bytes
        self.buckets = TokenBuckets(self.settings.rate_limit_per_minute / 60.0, self.settings.rate_limit_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            await _reply(send, 400, "The Content-Length header is not a number.")
            return
        if length > self.max_bytes:
            await _reply(send, 413, f"The request body is larger than {self.max_bytes} bytes.")
            return
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if path in RATE_LIMITED and scope.get("method") == "POST" and media not in ("", "application/json"):
            await _reply(send, 415, "Send the request body as JSON (Content-Type: application/json).")
            return
        key = presented_key(headers)
        valid = key_matches(key, self.keys)
        if is_protected(path) and not valid:
            await _reply(send, 401, "This route needs a valid API key (header X-API-Key or Authorization: Bearer).")
            return
        if path in RATE_LIMITED:
            client = ("key:" + hashlib.sha256(key.encode()).hexdigest()[:16]) if valid and key else _client_ip(scope)
            wait = self.buckets.take(client)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _reply(
                    send,
                    429,
                    f"Too many requests from this client; retry after {retry} s.",
                    [(b"retry-after", str(retry).encode())],
                )
                return
        await self._pass(scope, receive, send)

    async def _pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting body bytes as they arrive (a chunked body has no Content-Length)."""
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, f"The request body is larger than {self.max_bytes} bytes.")


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return "ip:" + (str(client[0]) if client else "unknown")


async def _reply(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
