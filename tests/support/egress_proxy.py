"""A forwarding HTTP proxy (absolute-URI requests and CONNECT) for test machines on a host-only bridge.

The machines of tests/support/nspawn.py have no route out; like VMs behind a site's proxy, they reach the Debian
mirror (apt) and PyPI (pip) through this proxy, which listens only on the bridge's host address. Each
connection is relayed byte for byte; nothing is cached or rewritten beyond the request line.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from urllib.parse import urlsplit


class _Handler(socketserver.StreamRequestHandler):
    # Unbuffered: nothing the client sends after the headers is held back in a buffer the relay would not see.
    rbufsize = 0

    def handle(self) -> None:
        request_line = self.rfile.readline(65536).decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3:
            return
        method, target, version = parts
        headers = []
        while True:
            line = self.rfile.readline(65536)
            if line in (b"\r\n", b"\n", b""):
                break
            headers.append(line)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=30)
            except OSError as exc:
                self.wfile.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{exc}".encode())
                return
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target)
            try:
                upstream = socket.create_connection((url.hostname, url.port or 80), timeout=30)
            except OSError as exc:
                self.wfile.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{exc}".encode())
                return
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            kept = [h for h in headers if not h.lower().startswith((b"proxy-connection:", b"connection:"))]
            upstream.sendall(
                f"{method} {path} {version}\r\n".encode("latin-1") + b"".join(kept) + b"Connection: close\r\n\r\n"
            )
        self._relay(self.connection, upstream)

    @staticmethod
    def _relay(client: socket.socket, upstream: socket.socket) -> None:
        sockets = [client, upstream]
        try:
            while True:
                readable, _, broken = select.select(sockets, [], sockets, 120)
                if broken or not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EgressProxy:
    """`with EgressProxy(address) as proxy:` serves on address:proxy.port until the block ends."""

    def __init__(self, address: str) -> None:
        self._server = _Server((address, 0), _Handler)
        self.address = address
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def __enter__(self) -> EgressProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
