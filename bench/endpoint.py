"""Fake X-Ray endpoint: ``python -m bench.endpoint [--port 0] [--delay-ms 200] [--error-pct 5]``.

Plain HTTP/1.1 keep-alive on an asyncio ``Protocol`` with hand-rolled parsing: a general HTTP
stack costs more CPU than the daemon under test would, and this process shares the cores with
it. Per request it does one regex pass over the raw body to pull out the benchmark markers.

API answered:
  POST /TraceSegments     -> {"UnprocessedTraceSegments":[]}  (or an injected 500/429)
  POST /TelemetryRecords  -> {}
Control (used by the runner, same port):
  GET /_bench/stats?phase=N          -> JSON counters and latency percentiles for that phase
  GET /_bench/config?delay_ms=&error_pct=&error_status=  -> change injection at run time
  GET /_bench/forget?phase=N         -> drop the per-phase state to bound memory

Prints ``{"port": N}`` on stdout once listening. Exits on SIGTERM/SIGINT, when its parent
process goes away, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.segments import MARKER_RE

_MAX_HEAD = 64 * 1024


class Injection:
    """Response shaping, changeable at run time through /_bench/config."""

    def __init__(self, delay_ms: float, error_pct: float, error_status: int) -> None:
        self.delay_s = delay_ms / 1000
        self.error_pct = error_pct
        self.error_status = error_status
        self._n = 0

    def should_fail(self) -> bool:
        # Deterministic, evenly spread failures: request n fails when floor(n*p/100) steps up.
        # Random draws would make small runs miss the requested percentage by a lot.
        n = self._n
        self._n += 1
        p = self.error_pct
        return p >= 100 or (p > 0 and int((n + 1) * p / 100) > int(n * p / 100))


class PhaseStats:
    """What arrived for one phase (one daemon run at one rate)."""

    def __init__(self) -> None:
        self.seen: dict[int, bytearray] = {}  # sender -> delivery count per seq (capped at 255)
        self.delivered = 0  # unique documents answered with 200
        self.duplicates = 0
        self.failed_docs = 0  # documents in requests we answered with an error
        self.requests = 0
        self.latencies_ms: list[float] = []  # first delivery of each document
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None

    def record(self, marks: list[tuple[bytes, bytes, bytes, bytes]], now_ns: int) -> None:
        self.requests += 1
        now = now_ns / 1e9
        if self.first_arrival is None:
            self.first_arrival = now
        self.last_arrival = now
        seen = self.seen
        lat = self.latencies_ms
        for _phase, sender_b, seq_b, sent_b in marks:
            sender = int(sender_b)
            seq = int(seq_b)
            counts = seen.get(sender)
            if counts is None:
                counts = seen[sender] = bytearray(1024)
            if seq >= len(counts):
                counts.extend(bytes(max(seq + 1, 2 * len(counts)) - len(counts)))
            c = counts[seq]
            if c:
                self.duplicates += 1
            else:
                self.delivered += 1
                lat.append((now_ns - int(sent_b)) / 1e6)
            if c < 255:
                counts[seq] = c + 1

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "failed_docs": self.failed_docs,
            "requests": self.requests,
            "latency_ms": {
                "p50": _pct(lat, 50),
                "p90": _pct(lat, 90),
                "p99": _pct(lat, 99),
                "max": round(lat[-1], 2) if lat else None,
            },
            "first_arrival": self.first_arrival,
            "last_arrival": self.last_arrival,
        }


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    idx = min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))
    return round(values[idx], 2)


class Server:
    def __init__(self, injection: Injection) -> None:
        self.injection = injection
        self.phases: dict[int, PhaseStats] = {}
        self.trace_requests = 0
        self.telemetry_requests = 0
        self.other_requests = 0
        self.error_responses = 0
        self.body_bytes = 0
        self.unmarked_requests = 0

    def phase(self, n: int) -> PhaseStats:
        stats = self.phases.get(n)
        if stats is None:
            stats = self.phases[n] = PhaseStats()
        return stats

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, bytes, float]:
        """Returns (status, JSON body, delay in seconds)."""
        path = target.split("?", 1)[0]
        self.body_bytes += len(body)
        if path == "/TraceSegments" and method == "POST":
            return self._trace_segments(body)
        if path == "/TelemetryRecords" and method == "POST":
            self.telemetry_requests += 1
            return 200, b"{}", self.injection.delay_s
        if path.startswith("/_bench/"):
            return 200, json.dumps(self._control(path, target)).encode(), 0.0
        self.other_requests += 1
        return 404, b'{"message":"not found"}', 0.0

    def _trace_segments(self, body: bytes) -> tuple[int, bytes, float]:
        self.trace_requests += 1
        arrival = time.monotonic_ns()
        marks = MARKER_RE.findall(body)
        inj = self.injection
        if inj.should_fail():
            self.error_responses += 1
            for m in marks:
                self.phase(int(m[0])).failed_docs += 1
            if inj.error_status == 429:
                err = b'{"__type":"ThrottledException","message":"Rate exceeded"}'
            else:
                err = b'{"__type":"InternalFailure","message":"injected failure"}'
            return inj.error_status, err, inj.delay_s
        if not marks:
            self.unmarked_requests += 1
        elif marks[0][0] == marks[-1][0]:
            self.phase(int(marks[0][0])).record(marks, arrival)
        else:  # a batch straddling two phases: split it
            by_phase: dict[int, list[tuple[bytes, bytes, bytes, bytes]]] = {}
            for m in marks:
                by_phase.setdefault(int(m[0]), []).append(m)
            for n, ms in by_phase.items():
                self.phase(n).record(ms, arrival)
        return 200, b'{"UnprocessedTraceSegments":[]}', inj.delay_s

    def _control(self, path: str, target: str) -> dict[str, Any]:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(target).query).items()}
        if path == "/_bench/config":
            inj = self.injection
            if "delay_ms" in query:
                inj.delay_s = float(query["delay_ms"]) / 1000
            if "error_pct" in query:
                inj.error_pct = float(query["error_pct"])
            if "error_status" in query:
                inj.error_status = int(query["error_status"])
            return {
                "delay_ms": inj.delay_s * 1000,
                "error_pct": inj.error_pct,
                "error_status": inj.error_status,
            }
        if path == "/_bench/forget":
            self.phases.pop(int(query.get("phase", -1)), None)
            return {"ok": True}
        out: dict[str, Any] = {
            "trace_requests": self.trace_requests,
            "telemetry_requests": self.telemetry_requests,
            "other_requests": self.other_requests,
            "error_responses": self.error_responses,
            "unmarked_requests": self.unmarked_requests,
            "body_bytes": self.body_bytes,
            "cpu_s": _cpu_seconds(),
            "now": time.monotonic(),
        }
        if "phase" in query:
            out["phase"] = self.phase(int(query["phase"])).summary()
        return out


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_REASONS = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 500: b"Internal Server Error"}


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; responses go out in request order even when delayed."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buf = bytearray()
        self.head: tuple[str, str, dict[str, str]] | None = None
        self.pending: deque[list[bytes | None]] = deque()
        self.transport: asyncio.Transport | None = None
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except ValueError:
            self._send_now(_BAD_REQUEST)
            if self.transport is not None:
                self.transport.close()

    def _parse(self) -> None:
        while True:
            if self.head is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > _MAX_HEAD:
                        raise ValueError("header too large")
                    return
                lines = self.buf[:end].decode("latin-1").split("\r\n")
                del self.buf[: end + 4]
                method, target, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.head = (method, target, headers)
                if headers.get("expect", "").lower() == "100-continue":
                    self._send_now(b"HTTP/1.1 100 Continue\r\n\r\n")
            method, target, headers = self.head
            if headers.get("transfer-encoding", "").lower() == "chunked":
                got = _dechunk(self.buf)
                if got is None:
                    return
                body, used = got
            else:
                used = int(headers.get("content-length", "0"))
                if len(self.buf) < used:
                    return
                body = bytes(self.buf[:used])
            del self.buf[:used]
            self.head = None
            if headers.get("connection", "").lower() == "close":
                self.close_after = True
            status, payload, delay = self.server.handle(method, target, body)
            self._respond(status, payload, delay)

    def _respond(self, status: int, payload: bytes, delay: float) -> None:
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/x-amz-json-1.1\r\n" % (
            status,
            _REASONS.get(status, b"Status"),
        )
        extra = b""
        if status == 500:
            extra = b"x-amzn-ErrorType: InternalFailure\r\n"
        elif status == 429:
            extra = b"x-amzn-ErrorType: ThrottledException\r\n"
        response = (
            head
            + extra
            + b"x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(payload)
            + payload
        )
        slot: list[bytes | None] = [None]
        self.pending.append(slot)
        if delay > 0:
            # Delayed answers overlap across connections: each waits on its own timer.
            asyncio.get_running_loop().call_later(delay, self._fill, slot, response)
        else:
            self._fill(slot, response)

    def _fill(self, slot: list[bytes | None], response: bytes) -> None:
        slot[0] = response
        while self.pending and self.pending[0][0] is not None:
            ready = self.pending.popleft()[0]
            assert ready is not None
            self._send_now(ready)
        if self.close_after and not self.pending and self.transport is not None:
            self.transport.close()

    def _send_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _dechunk(buf: bytearray) -> tuple[bytes, int] | None:
    """Decodes a complete chunked body at the start of buf, or None if more bytes are needed."""
    pos = 0
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers, usually none
            if end < 0:
                return None
            return b"".join(parts), end + 4
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


async def serve(host: str, port: int, injection: Injection, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    server = Server(injection)
    srv = await loop.create_server(lambda: HttpConnection(server), host, port, backlog=1024)
    bound = srv.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"port": bound, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    deadline = time.monotonic() + max_seconds
    async with srv:
        # Poll instead of waiting forever so an orphaned endpoint stops by itself.
        while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.endpoint", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added to every response")
    parser.add_argument("--error-pct", type=float, default=0.0, help="%% of /TraceSegments failed")
    parser.add_argument("--error-status", type=int, default=500, choices=(500, 429))
    parser.add_argument("--max-seconds", type=float, default=4 * 3600)
    args = parser.parse_args(argv)
    injection = Injection(args.delay_ms, args.error_pct, args.error_status)
    asyncio.run(serve(args.host, args.port, injection, args.max_seconds))


if __name__ == "__main__":
    main()
