"""The web page: a static ask box served from the RAG service's own port (no build step, nothing from a CDN)."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).parent / "web"

# The page only talks to its own origin; nothing inline, nothing remote, so an injected string cannot run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _index(_: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


class _Static(StaticFiles):
    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def make_app() -> Starlette:
    """`/` is the page, `/ui/*` its script and style; every other path falls through to the API."""
    return Starlette(routes=[Route("/", _index), Mount("/ui", _Static(directory=WEB_DIR), name="ui")])
