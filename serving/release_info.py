"""Which registered version a service runs: reported in /healthz, an `X-TQA-Version` header and a metric."""

from __future__ import annotations

import json
from typing import Any

import bentoml

from ml.settings import Settings
from serving.release_probe import is_probe

RELEASE_INFO = bentoml.metrics.Gauge(
    name="tqa_release_info",
    documentation="1 for the registered version (and alias) this service was started for.",
    labelnames=["version", "alias"],
)

ASK_RESPONSES = bentoml.metrics.Counter(
    name="tqa_ask_responses",
    documentation="Answers of /ask by status code and source: user, or the release's persona probe.",
    labelnames=["code", "source"],
)


class ReleaseHeaders:
    """ASGI middleware: when the service runs a registered version, every response names it.

    A service started without an alias or version passes everything through unchanged.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        settings = Settings()
        self.version = settings.model_version or ""
        self.alias = settings.model_alias or ""
        self.headers = [(b"x-tqa-version", self.version.encode()), (b"x-tqa-alias", self.alias.encode())]
        if self.version:
            RELEASE_INFO.labels(version=self.version, alias=self.alias or "-").set(1)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/ask":
            await self._counted(scope, receive, send)
            return
        await self._named(scope, receive, send)

    async def _counted(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """/ask answers counted by status and source: the canary analysis judges users' traffic alone."""
        source = "probe" if is_probe(scope.get("headers", [])) else "user"
        status = [500]

        async def send_counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._named(scope, receive, send_counted)
        finally:
            ASK_RESPONSES.labels(code=str(status[0]), source=source).inc()

    async def _named(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.version:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/healthz" and scope["method"] == "GET":
            body = json.dumps({"status": "ok", "version": self.version, "alias": self.alias or None}).encode()
            start = {"type": "http.response.start", "status": 200}
            start["headers"] = [(b"content-type", b"application/json"), *self.headers]
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return

        async def send_named(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_named)
