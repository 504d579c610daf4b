"""A fake AWS X-Ray API on a real loopback socket, for tests that run the daemon as a process.

The daemon under test is a separate process, so an in-process ``httpx.MockTransport`` cannot
reach it: this fake is a plain ``ThreadingHTTPServer`` in a background thread. It records every
request (method, path, headers, raw body, arrival time), decodes ``PutTraceSegments`` bodies and
answers like X-Ray does. Answers can be scripted per path (errors, throttling, hanging past the
daemon's request timeout, unprocessed segments), and tests wait for deliveries with a real-time
bound instead of sleeping.

Usage::

    with FakeXRay() as fake:
        fake.script("/TraceSegments", Reply.throttle(), Reply.error(500))
        ...  # point the daemon at fake.url
        docs = fake.wait_for_documents(3, timeout_s=10)
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

TRACE_SEGMENTS = "/TraceSegments"
TELEMETRY_RECORDS = "/TelemetryRecords"

THROTTLING_BODY = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One scripted answer.

    ``status`` 200 answers with the path's normal body unless ``body`` is given. ``hang_s``
    holds the response back (longer than the daemon's request timeout, to make it give up).
    ``unprocessed`` picks documents of a ``PutTraceSegments`` batch to report as
    ``UnprocessedTraceSegments``; it receives the decoded documents and returns the chosen ones.
    """

    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    hang_s: float = 0.0
    unprocessed: Callable[[Sequence[str]], Sequence[str]] | None = None
    error_code: str = "InternalFailure"
    message: str = "Injected by FakeXRay"

    @classmethod
    def error(cls, status: int = 500) -> Reply:
        return cls(status=status, body=b'{"__type":"InternalFailure","message":"Injected error"}')

    @classmethod
    def throttle(cls) -> Reply:
        return cls(status=429, body=THROTTLING_BODY)

    @classmethod
    def bad_request(cls) -> Reply:
        return cls(
            status=400,
            body=b'{"__type":"InvalidRequestException","message":"Injected bad request"}',
        )

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        return cls(hang_s=seconds)

    @classmethod
    def unprocess(
        cls,
        pick: Callable[[Sequence[str]], Sequence[str]] = lambda docs: docs[:1],
        *,
        error_code: str = "InternalFailure",
        message: str = "Injected unprocessed segment",
    ) -> Reply:
        return cls(unprocessed=pick, error_code=error_code, message=message)


@dataclasses.dataclass(slots=True, kw_only=True)
class RecordedRequest:
    """One request as it arrived, plus what the fake answered."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    """In wire order, names as sent."""
    body: bytes
    arrived_at: float
    """``time.monotonic()`` when the request was read, for measuring gaps between requests."""
    arrived_wall_s: float
    """``time.time()`` at the same moment, for comparing with timestamps the client sent."""
    reply: Reply
    documents: list[str] | None = None
    """``TraceSegmentDocuments`` of a ``/TraceSegments`` request whose body decoded."""
    unprocessed_ids: list[str] = dataclasses.field(default_factory=list)
    completed: bool = False
    """Whether the answer went out (not when a hanging reply outlived the client's patience)."""

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header called ``name`` (case-insensitive), else ``default``."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), default)

    @property
    def delivered(self) -> list[str]:
        """Documents X-Ray would now hold: a 200 answer, minus the ones reported unprocessed."""
        if self.documents is None or self.reply.status != 200 or not self.completed:
            return []
        skipped = set(self.unprocessed_ids)
        return [doc for doc in self.documents if _segment_id(doc) not in skipped]


def _segment_id(doc: str) -> str | None:
    try:
        parsed = json.loads(doc)
    except ValueError:
        return None
    value = parsed.get("id") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so the daemon's keep-alive pool is exercised as against the real endpoint.
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_PUT = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request lines on stderr; the recording is the log."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeXRay

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections the daemon drops (timeouts, shutdown) are expected, not test failures."""


class FakeXRay:
    """The fake endpoint. Use as a context manager; ``url`` is valid inside it."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._scripts: dict[str, collections.deque[Reply]] = collections.defaultdict(
            collections.deque
        )
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.set()  # releases hanging replies at once
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeXRay as a context manager"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next ``len(replies)`` requests to ``path`` with these, in order."""
        with self._lock:
            self._scripts[path].extend(replies)

    def recover(self, path: str = TRACE_SEGMENTS) -> None:
        """Drop the replies still scripted for ``path``: from now on it answers normally."""
        with self._lock:
            self._scripts[path].clear()

    def fail_next(self, n: int, status: int = 500, path: str = TRACE_SEGMENTS) -> None:
        self.script(path, *[Reply.error(status)] * n)

    def throttle_next(self, n: int, path: str = TRACE_SEGMENTS) -> None:
        self.script(path, *[Reply.throttle()] * n)

    def hang_next(self, n: int, seconds: float, path: str = TRACE_SEGMENTS) -> None:
        self.script(path, *[Reply.hang(seconds)] * n)

    # -- inspection --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def delivered_documents(self) -> list[str]:
        """Every document answered 200 and not reported unprocessed, in arrival order."""
        return [doc for r in self.requests_to(TRACE_SEGMENTS) for doc in r.delivered]

    def wait_for_documents(self, n: int, timeout_s: float = 10.0) -> list[str]:
        """Block until at least ``n`` documents were delivered; fail after ``timeout_s``."""
        self._wait(lambda: len(self.delivered_documents()) >= n, timeout_s, f"{n} documents")
        return self.delivered_documents()

    def wait_for_requests(
        self, n: int, path: str = TRACE_SEGMENTS, timeout_s: float = 10.0
    ) -> list[RecordedRequest]:
        """Block until ``n`` requests to ``path`` arrived (answered or not)."""
        self._wait(lambda: len(self.requests_to(path)) >= n, timeout_s, f"{n} {path} requests")
        return self.requests_to(path)

    def _wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = [
                        (r.path, r.reply.status, len(r.documents or []), r.completed)
                        for r in self._requests
                    ]
                    raise AssertionError(
                        f"waited {timeout_s} s for {what}; requests so far "
                        f"(path, status, documents, completed): {summary}"
                    )
                self._lock.wait(left)

    def iter_documents(self) -> Iterator[str]:
        """Every decoded document of every ``/TraceSegments`` request, failed ones included."""
        for r in self.requests_to(TRACE_SEGMENTS):
            yield from r.documents or []

    # -- serving -----------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        arrived_at, arrived_wall_s = time.monotonic(), time.time()
        body = _read_body(handler)
        path = handler.path.split("?", 1)[0]
        with self._lock:
            script = self._scripts.get(path)
            reply = script.popleft() if script else Reply()
        record = RecordedRequest(
            method=handler.command,
            path=path,
            headers=list(handler.headers.items()),
            body=body,
            arrived_at=arrived_at,
            arrived_wall_s=arrived_wall_s,
            reply=reply,
        )
        if path == TRACE_SEGMENTS:
            record.documents = _decode_documents(body)
            if reply.unprocessed is not None and record.documents is not None:
                picked = reply.unprocessed(record.documents)
                record.unprocessed_ids = [i for i in map(_segment_id, picked) if i is not None]
        with self._lock:
            self._requests.append(record)
            self._lock.notify_all()

        if reply.hang_s and (self._closing.wait(reply.hang_s) or _peer_closed(handler.connection)):
            # The client gave up (its own timeout) or the test is over: nothing was delivered.
            handler.close_connection = True
            return
        payload = self._payload(path, reply, record)
        # Marked before writing: a client may act on the answer before this thread runs again.
        with self._lock:
            record.completed = True
            self._lock.notify_all()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.send_header("x-amzn-RequestId", f"fake-{len(self._requests)}")
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True
            with self._lock:
                record.completed = False
                self._lock.notify_all()

    @staticmethod
    def _payload(path: str, reply: Reply, record: RecordedRequest) -> bytes:
        if reply.body is not None:
            return reply.body
        if path == TRACE_SEGMENTS:
            unprocessed = [
                {"Id": seg_id, "ErrorCode": reply.error_code, "Message": reply.message}
                for seg_id in record.unprocessed_ids
            ]
            return json.dumps({"UnprocessedTraceSegments": unprocessed}).encode()
        return b"{}"


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the client has closed its end (a read would return end-of-file)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _read_body(handler: _Handler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailer section ends with an empty line.
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length", "0"))
    return handler.rfile.read(length) if length else b""


def _decode_documents(body: bytes) -> list[str] | None:
    # A daemon may forward a body that is not UTF-8 byte for byte (the Go daemon does);
    # surrogateescape keeps such bytes visible instead of losing the whole batch.
    try:
        parsed = json.loads(body.decode("utf-8", "surrogateescape"))
    except ValueError:
        return None
    docs = parsed.get("TraceSegmentDocuments") if isinstance(parsed, dict) else None
    if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
        return None
    return docs
