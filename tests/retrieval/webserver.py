"""A real HTTP server on 127.0.0.1 for the fetching tests: routes are set per test, requests are recorded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes | None = b""
    status: int = 200
    headers: dict = field(default_factory=dict)
    trickle_s: float = 0.0  # seconds between 1-byte writes, for a server that never finishes
    stream: object = None  # an iterator of byte blocks, written as they come
    raw: object = None  # an iterator of byte blocks written as the whole answer, status line and headers included


def local_fetcher(**policy):
    """A Fetcher for the test server: 127.0.0.1 allowed, no spacing between requests, a short time budget."""
    from retrieval.fetch import Fetcher, Policy

    return Fetcher(Policy(**{"allow_private": True, "host_interval_s": 0.0, "timeout_s": 5.0, **policy}))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):  # a client killed mid-request
            super().handle_error(request, client_address)


class WebServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict]] = []
        self.sent = 0  # bytes written by raw routes
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(self.path) or server.routes.get(self.path.split("?")[0])
                if route is None:
                    route = Route(b"not here", 404, {"Content-Type": "text/plain"})
                if callable(route):
                    route = route(self)
                try:
                    if route.raw is not None:
                        for block in route.raw:
                            self.wfile.write(block)
                            self.wfile.flush()
                            server.sent += len(block)
                        self.close_connection = True
                        return
                    self.send_response(route.status)
                    for key, value in route.headers.items():
                        self.send_header(key, value)
                    if route.stream is None and route.trickle_s == 0 and "Content-Length" not in route.headers:
                        self.send_header("Content-Length", str(len(route.body or b"")))
                    if route.stream is not None or route.trickle_s:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if route.stream is not None:
                        for block in route.stream:
                            self.wfile.write(block)
                    elif route.trickle_s:
                        for byte in route.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(route.trickle_s)
                    elif route.body:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]
