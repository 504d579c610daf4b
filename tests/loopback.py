"""A plain HTTP server on a loopback port, in a background thread, for fakes of AWS services.

The code under test may run in another thread or process (botocore's IMDS and STS calls run in
worker threads), so these fakes are real servers rather than in-process transports.
"""

from __future__ import annotations

import http.server
import threading
from typing import Self


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that keeps test output clean and answers in one call."""

    def answer(self, status: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackServer:
    """Serves ``handler`` on ``127.0.0.1`` while used as a context manager."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Self:
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
