"""Frozen views of the daemon's counters and gauges, their JSON form, and rates between two.

A ``Snapshot`` is cumulative: every counter counts since start-up, so a reader that misses a frame
(a slow dashboard, a lossy event subscriber) loses nothing; rates are deltas between any two
frames. Taking one copies a dozen ints and asks the daemon for its gauges, a few microseconds.

The daemon owns three mutable things the pipeline bumps in place (plain attributes, no locks,
everything runs on the trio thread): ``stats.Counters``, ``UploadLatency`` and ``ProxyCounters``.
Gauges are read at snapshot time through a ``GaugeSource`` the daemon supplies, because they
live in objects this module does not own (the budget, channel ``statistics()``).
"""

from __future__ import annotations

import bisect
import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from xray_trio.errors import ErrorKind

if TYPE_CHECKING:
    from xray_trio.stats import Counters

LATENCY_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the upload latency histogram; X-Ray calls take tens of ms, timeouts 2 s."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Gauges:
    """Point-in-time levels the daemon reports on each snapshot."""

    budget_used_bytes: int = 0
    budget_total_bytes: int = 0
    segments_queued: int = 0
    """Documents waiting for the batcher (segments channel ``current_buffer_used``)."""
    batches_queued: int = 0
    """Batches waiting for a sink (sum over the batch channels)."""


GaugeSource = Callable[[], Gauges]
"""What the daemon passes to ``Snapshotter``: reads the budget and channel statistics."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LatencySnapshot:
    """Upload latency so far: a histogram with ``len(bounds_s) + 1`` buckets (the last is +Inf)."""

    count: int = 0
    sum_s: float = 0.0
    last_s: float = 0.0
    bounds_s: tuple[float, ...] = LATENCY_BOUNDS_S
    buckets: tuple[int, ...] = (0,) * (len(LATENCY_BOUNDS_S) + 1)
    """Per-bucket counts (not cumulative): ``bounds_s[i-1] < x <= bounds_s[i]``."""

    @property
    def avg_s(self) -> float:
        return self.sum_s / self.count if self.count else 0.0


class UploadLatency:
    """Duration of each upload call, fed by the uploaders with ``observe(seconds)``."""

    __slots__ = ("_buckets", "count", "last_s", "sum_s")

    def __init__(self) -> None:
        self.count = 0
        self.sum_s = 0.0
        self.last_s = 0.0
        self._buckets = [0] * (len(LATENCY_BOUNDS_S) + 1)

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum_s += seconds
        self.last_s = seconds
        # bisect_left puts a value equal to a bound in that bound's bucket (Prometheus's ``le``).
        self._buckets[bisect.bisect_left(LATENCY_BOUNDS_S, seconds)] += 1

    def snapshot(self) -> LatencySnapshot:
        return LatencySnapshot(
            count=self.count, sum_s=self.sum_s, last_s=self.last_s, buckets=tuple(self._buckets)
        )


class ProxyCounters:
    """Requests through the sampling proxy, bumped by the proxy task."""

    __slots__ = ("errors", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        """Requests answered 502 because X-Ray could not be reached or signing failed."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Every counter (cumulative since start-up) and gauge, at one moment."""

    seq: int
    uptime_s: float
    received: int = 0
    bytes_received: int = 0
    accepted: int = 0
    rejected_missing_header: int = 0
    rejected_invalid_header: int = 0
    spillover: int = 0
    sent: int = 0
    batches_sent: int = 0
    stdout_written: int = 0
    unprocessed: int = 0
    retries: int = 0
    given_up: int = 0
    upload_errors: Mapping[ErrorKind, int] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType(dict.fromkeys(ErrorKind, 0))
    )
    budget_used_bytes: int = 0
    budget_total_bytes: int = 0
    segments_queued: int = 0
    batches_queued: int = 0
    latency: LatencySnapshot = LatencySnapshot()
    proxy_requests: int = 0
    proxy_errors: int = 0

    @property
    def rejected(self) -> int:
        """Go's SegmentsRejectedCount (see ``Counters.rejected``)."""
        return self.rejected_missing_header + self.rejected_invalid_header + self.unprocessed


def take_snapshot(
    counters: Counters,
    gauges: Gauges,
    *,
    seq: int,
    uptime_s: float,
    latency: UploadLatency,
    proxy: ProxyCounters,
) -> Snapshot:
    """Copy the counters and the given gauges into a frozen ``Snapshot``."""
    return Snapshot(
        seq=seq,
        uptime_s=uptime_s,
        received=counters.received,
        bytes_received=counters.bytes_received,
        accepted=counters.accepted,
        rejected_missing_header=counters.rejected_missing_header,
        rejected_invalid_header=counters.rejected_invalid_header,
        spillover=counters.spillover,
        sent=counters.sent,
        batches_sent=counters.batches_sent,
        stdout_written=counters.stdout_written,
        unprocessed=counters.unprocessed,
        retries=counters.retries,
        given_up=counters.given_up,
        upload_errors=types.MappingProxyType(dict(counters.upload_errors)),
        budget_used_bytes=gauges.budget_used_bytes,
        budget_total_bytes=gauges.budget_total_bytes,
        segments_queued=gauges.segments_queued,
        batches_queued=gauges.batches_queued,
        latency=latency.snapshot(),
        proxy_requests=proxy.requests,
        proxy_errors=proxy.errors,
    )


class Snapshotter:
    """The daemon's ``take_snapshot`` callable: binds its counters, gauges and start time.

    Inert: calling it copies values; it starts nothing. ``seq`` grows by one per call, so a
    reader can tell frames apart even when two are taken in the same clock tick.
    """

    def __init__(
        self,
        counters: Counters,
        gauges: GaugeSource,
        *,
        latency: UploadLatency,
        proxy: ProxyCounters,
        started_at: float,
    ) -> None:
        """``started_at`` is ``trio.current_time()`` when the daemon started."""
        self._counters = counters
        self._gauges = gauges
        self._latency = latency
        self._proxy = proxy
        self._started_at = started_at
        self._seq = 0

    def __call__(self) -> Snapshot:
        self._seq += 1
        return take_snapshot(
            self._counters,
            self._gauges(),
            seq=self._seq,
            uptime_s=trio.current_time() - self._started_at,
            latency=self._latency,
            proxy=self._proxy,
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rates:
    """Per-second rates between two snapshots; all zero when no time passed or on a restart."""

    interval_s: float = 0.0
    received_per_s: float = 0.0
    delivered_per_s: float = 0.0
    """Documents every sink finished with: accepted by X-Ray, or written by ``stdout``."""
    rejected_per_s: float = 0.0
    dropped_per_s: float = 0.0
    """Documents lost: refused by a spent budget, or given up after retries."""
    upload_errors_per_s: float = 0.0
    latency_avg_s: float = 0.0
    """Mean upload latency of the calls made in the interval (0 when there were none)."""


def rates(prev: Snapshot, cur: Snapshot) -> Rates:
    """Per-second deltas from ``prev`` to ``cur``."""
    dt = cur.uptime_s - prev.uptime_s
    # Uptime going backwards means the attached daemon restarted: deltas would be meaningless.
    if dt <= 0:
        return Rates()
    calls = cur.latency.count - prev.latency.count
    return Rates(
        interval_s=dt,
        received_per_s=(cur.received - prev.received) / dt,
        delivered_per_s=(cur.sent + cur.stdout_written - prev.sent - prev.stdout_written) / dt,
        rejected_per_s=(cur.rejected - prev.rejected) / dt,
        dropped_per_s=(cur.spillover + cur.given_up - prev.spillover - prev.given_up) / dt,
        upload_errors_per_s=(sum(cur.upload_errors.values()) - sum(prev.upload_errors.values()))
        / dt,
        latency_avg_s=(cur.latency.sum_s - prev.latency.sum_s) / calls if calls > 0 else 0.0,
    )


_INT_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(Snapshot)
    if f.name not in ("seq", "uptime_s", "upload_errors", "latency")
)


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as a JSON-ready dict (the body of a ``"snapshot"`` line on ``/events``)."""
    out: dict[str, Any] = {"seq": snapshot.seq, "uptime_s": snapshot.uptime_s}
    for name in _INT_FIELDS:
        out[name] = getattr(snapshot, name)
    out["upload_errors"] = {kind.value: n for kind, n in snapshot.upload_errors.items()}
    lat = snapshot.latency
    out["latency"] = {
        "count": lat.count,
        "sum_s": lat.sum_s,
        "last_s": lat.last_s,
        "bounds_s": list(lat.bounds_s),
        "buckets": list(lat.buckets),
    }
    return out


def from_json(obj: Mapping[str, Any]) -> Snapshot:
    """Rebuild a ``Snapshot`` from ``to_json`` output; raises ``ValueError`` if it is malformed.

    Missing counters read as 0 and unknown keys are ignored, so an inspector can attach to a
    daemon one version older or newer than itself.
    """
    try:
        errors = obj.get("upload_errors", {})
        lat = obj.get("latency", {})
        bounds = tuple(_float(b) for b in lat.get("bounds_s", LATENCY_BOUNDS_S))
        buckets = tuple(_int(b) for b in lat.get("buckets", (0,) * (len(bounds) + 1)))
        if len(buckets) != len(bounds) + 1:
            raise ValueError("latency buckets do not match their bounds")
        known = {kind.value: kind for kind in ErrorKind}
        return Snapshot(
            seq=_int(obj["seq"]),
            uptime_s=_float(obj["uptime_s"]),
            upload_errors=types.MappingProxyType(
                {kind: _int(errors.get(value, 0)) for value, kind in known.items()}
            ),
            latency=LatencySnapshot(
                count=_int(lat.get("count", 0)),
                sum_s=_float(lat.get("sum_s", 0.0)),
                last_s=_float(lat.get("last_s", 0.0)),
                bounds_s=bounds,
                buckets=buckets,
            ),
            **{name: _int(obj.get(name, 0)) for name in _INT_FIELDS},
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a snapshot: {exc!r}") from exc


def _int(value: object) -> int:
    # bool is an int subclass, and JSON's true is never a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)
