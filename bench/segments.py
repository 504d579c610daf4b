"""SDK-shaped segment datagrams carrying a benchmark marker.

The document mirrors what the Python ``aws-xray-sdk`` sends (``json.dumps`` spacing, microsecond
times, an embedded subsegment repeating ``trace_id``/``type``/``parent_id``) and is about 1 KB.

The marker ``XB.<phase>.<sender>.<seq>.<sent_ns>`` sits in an annotation value. It is plain
ASCII digits and dots, so the endpoint can find it with one regex over the raw HTTP body whether
or not the daemon re-escaped the document inside ``TraceSegmentDocuments``.
"""

from __future__ import annotations

import random
import re
import time

HEADER = '{"format":"json","version":1}\n'

# Matches the marker in raw request bodies; groups are phase, sender, seq, sent_ns.
MARKER_RE = re.compile(rb"XB\.(\d+)\.(\d+)\.(\d+)\.(\d+)")

# %-template instead of json.dumps: formatting costs about a microsecond, which keeps one
# sender process able to pace tens of thousands of datagrams a second.
_TEMPLATE = (
    HEADER + '{"id": "%016x", "name": "bench-orders", "start_time": %.6f, "in_progress": false, '
    '"http": {"request": {"url": "http://orders.bench.local/orders/%d?expand=items", '
    '"method": "POST", "user_agent": "python-requests/2.32.3", "client_ip": "10.0.12.34", '
    '"x_forwarded_for": true}, "response": {"status": 200, "content_length": 512}}, '
    '"annotations": {"bench_mark": "XB.%d.%d.%d.%d", "customer": "c-1234", "items": 3, '
    '"ratio": 0.25, "vip": true}, '
    '"metadata": {"default": {"request": {"tenant": "acme", "region": "eu-west-1"}}}, '
    '"aws": {"xray": {"sdk": "X-Ray for Python", "sdk_version": "2.15.0"}}, '
    '"subsegments": [{"id": "%016x", "name": "orders-db", "start_time": %.6f, '
    '"parent_id": "%016x", "in_progress": false, "trace_id": "%s", "type": "subsegment", '
    '"namespace": "remote", "sql": {"url": "postgresql://db.bench.local:5432/app", '
    '"database_type": "PostgreSQL", "sanitized_query": "SELECT * FROM orders WHERE id = ?"}, '
    '"end_time": %.6f}], '
    '"trace_id": "%s", "service": {"runtime": "CPython", "runtime_version": "3.11.7"}, '
    '"end_time": %.6f}'
)


class DatagramFactory:
    """Builds datagrams for one sender; ids and times change per document like a real service."""

    def __init__(self, phase: int, sender: int, seed: int | None = None) -> None:
        self._phase = phase
        self._sender = sender
        self._rng = random.Random(seed)

    def build(self, seq: int, sent_ns: int) -> bytes:
        bits = self._rng.getrandbits
        now = time.time()
        seg_id = bits(64)
        trace_id = f"1-{int(now):08x}-{bits(96):024x}"
        return (
            _TEMPLATE
            % (
                seg_id,
                now - 0.0125,
                seq % 10000,
                self._phase,
                self._sender,
                seq,
                sent_ns,
                bits(64),
                now - 0.0100,
                seg_id,
                trace_id,
                now - 0.0020,
                trace_id,
                now,
            )
        ).encode("ascii")
