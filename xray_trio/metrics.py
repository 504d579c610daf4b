"""Prometheus text exposition (format 0.0.4) of one ``Snapshot``.

Written by hand rather than through prometheus_client's registry: the daemon already keeps its
numbers in ``Counters`` and takes frozen snapshots, so a registry would be a second, global copy
of the same state. The format is a few lines per metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xray_trio.errors import ErrorKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from xray_trio.snapshot import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PREFIX = "xray_trio_"
_Sample = tuple[str, int | float]
"""A label set already rendered (``'{kind="timeout"}'`` or ``''``) and its value."""


def render_metrics(snap: Snapshot) -> str:
    """Every counter and gauge of ``snap`` as Prometheus text."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: Iterable[_Sample]) -> None:
        full = _PREFIX + name
        lines.append(f"# HELP {full} {help_}")
        lines.append(f"# TYPE {full} {kind}")
        lines.extend(f"{full}{labels} {_value(value)}" for labels, value in samples)

    def one(name: str, kind: str, help_: str, value: int | float) -> None:
        metric(name, kind, help_, [("", value)])

    one("uptime_seconds", "gauge", "Seconds since the daemon started.", snap.uptime_s)
    one(
        "segments_received_total",
        "counter",
        "Datagrams read from the UDP socket.",
        snap.received,
    )
    one("received_bytes_total", "counter", "Bytes of datagrams received.", snap.bytes_received)
    one(
        "segments_accepted_total",
        "counter",
        "Datagrams with a valid header and a document, taken into the buffer.",
        snap.accepted,
    )
    metric(
        "segments_rejected_total",
        "counter",
        "Datagrams refused for their header.",
        [
            (_labels(reason="missing_header"), snap.rejected_missing_header),
            (_labels(reason="invalid_header"), snap.rejected_invalid_header),
        ],
    )
    one(
        "segments_spillover_total",
        "counter",
        "Valid documents dropped because the buffer was full.",
        snap.spillover,
    )
    one("segments_sent_total", "counter", "Documents a sink accepted.", snap.sent)
    one("batches_sent_total", "counter", "Batches a sink accepted.", snap.batches_sent)
    one(
        "stdout_written_total",
        "counter",
        "Documents written by the stdout sink.",
        snap.stdout_written,
    )
    one(
        "segments_unprocessed_total",
        "counter",
        "Documents X-Ray answered as unprocessed and that were not delivered later.",
        snap.unprocessed,
    )
    one("upload_retries_total", "counter", "Upload attempts repeated.", snap.retries)
    one(
        "segments_given_up_total",
        "counter",
        "Documents dropped after retries ran out or on a non-retriable error.",
        snap.given_up,
    )
    metric(
        "upload_errors_total",
        "counter",
        "Failed upload attempts by kind.",
        [(_labels(kind=kind.value), snap.upload_errors.get(kind, 0)) for kind in ErrorKind],
    )
    metric(
        "buffer_bytes",
        "gauge",
        "Buffer budget held by documents in flight (used) and still available (free).",
        [
            (_labels(state="used"), snap.budget_used_bytes),
            (_labels(state="free"), snap.budget_total_bytes - snap.budget_used_bytes),
        ],
    )
    one("buffer_limit_bytes", "gauge", "Size of the buffer budget.", snap.budget_total_bytes)
    one(
        "segments_queued",
        "gauge",
        "Documents held in the buffer budget: received, not yet delivered or given up.",
        snap.segments_queued,
    )
    one("batches_queued", "gauge", "Batches waiting for a sink.", snap.batches_queued)
    lines.extend(_histogram(snap))
    one(
        "proxy_requests_total",
        "counter",
        "Requests through the sampling proxy.",
        snap.proxy_requests,
    )
    one(
        "proxy_errors_total",
        "counter",
        "Sampling proxy requests answered 502.",
        snap.proxy_errors,
    )
    return "\n".join(lines) + "\n"


def _histogram(snap: Snapshot) -> list[str]:
    lat = snap.latency
    name = _PREFIX + "upload_duration_seconds"
    lines = [
        f"# HELP {name} Duration of upload calls, successful or not.",
        f"# TYPE {name} histogram",
    ]
    cumulative = 0
    bounds = [_value(bound) for bound in lat.bounds_s] + ["+Inf"]
    for le, count in zip(bounds, lat.buckets, strict=True):
        cumulative += count
        lines.append(f"{name}_bucket{_labels(le=le)} {cumulative}")
    lines.append(f"{name}_sum {_value(lat.sum_s)}")
    lines.append(f"{name}_count {lat.count}")
    return lines


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _escape(value: str) -> str:
    # The exposition format's label escapes; the values here are fixed names, but it costs nothing.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)
