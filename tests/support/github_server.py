"""A local HTTP server on 127.0.0.1 that answers like the GitHub REST API from recorded-format JSON.

Each route (`/repos/o/r/issues`, optionally with its query) has a queue of scripted responses; the last one repeats.
Requests are logged so tests can check what the client sent (If-None-Match, since, Authorization).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is (a malformed page)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class FakeGitHub:
    """Scripted GitHub on a free port: `routes[path_and_query] = [Reply, ...]`."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.log: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.log.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
                path_only = self.path.split("?", 1)[0]
                queue = server.routes.get(self.path) or server.routes.get(path_only)
                if not queue:
                    reply = Reply(404, {"message": "Not Found"})
                else:
                    reply = queue.pop(0) if len(queue) > 1 else queue[0]
                data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                if reply.status == 304:
                    data = b""
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v.replace("{base}", server.url))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, route: str, *replies: Reply) -> None:
        self.routes.setdefault(route, []).extend(replies)


def issue(number: int, updated: str, title: str = "", body: str = "", pr: bool = False, **extra: Any) -> dict[str, Any]:
    """An item of the issues endpoint in GitHub's recorded format (fields we read, plus a few we don't)."""
    item: dict[str, Any] = {
        "url": f"https://api.github.com/repos/example/minitf/issues/{number}",
        "id": 1000 + number,
        "node_id": f"I_{number}",
        "number": number,
        "title": title or f"Item {number}",
        "user": {"login": "alice", "id": 1, "type": "User"},
        "labels": [{"id": 1, "name": "bug"}] if not pr else [],
        "state": "closed",
        "locked": False,
        "comments": 1,
        "created_at": "2024-01-02T10:00:00Z",
        "updated_at": updated,
        "closed_at": "2024-01-05T10:00:00Z",
        "author_association": "CONTRIBUTOR",
        "body": body,
        **extra,
    }
    if pr:
        item["pull_request"] = {"url": f"https://api.github.com/repos/example/minitf/pulls/{number}"}
    return item


def comment(cid: int, login: str, body: str, created: str = "2024-01-03T09:00:00Z") -> dict[str, Any]:
    return {"id": cid, "user": {"login": login}, "created_at": created, "updated_at": created, "body": body}
