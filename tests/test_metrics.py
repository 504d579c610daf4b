"""Snapshots (taking, JSON, rates) and their Prometheus exposition."""

from __future__ import annotations

import dataclasses
import types

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from xray_trio.errors import ErrorKind
from xray_trio.metrics import render_metrics
from xray_trio.snapshot import (
    LATENCY_BOUNDS_S,
    Gauges,
    LatencySnapshot,
    ProxyCounters,
    Rates,
    Snapshot,
    Snapshotter,
    UploadLatency,
    from_json,
    rates,
    take_snapshot,
    to_json,
)
from xray_trio.stats import Counters


def _counters() -> Counters:
    """Counters with a distinct value in every field, so a swapped field cannot hide."""
    counters = Counters()
    for value, name in enumerate(sorted(Counters.__slots__), start=1):
        if name != "upload_errors":
            setattr(counters, name, value * 10)
    for value, kind in enumerate(ErrorKind, start=1):
        counters.upload_errors[kind] = value
    return counters


def _taken(**gauges: int) -> Snapshot:
    latency = UploadLatency()
    for seconds in (0.004, 0.05, 0.3, 12.0):
        latency.observe(seconds)
    proxy = ProxyCounters()
    proxy.requests, proxy.errors = 7, 2
    return take_snapshot(
        _counters(), Gauges(**gauges), seq=3, uptime_s=9.5, latency=latency, proxy=proxy
    )


def test_a_snapshot_copies_every_counter() -> None:
    counters = _counters()
    snap = take_snapshot(
        counters,
        Gauges(),
        seq=1,
        uptime_s=0.0,
        latency=UploadLatency(),
        proxy=ProxyCounters(),
    )
    for name in Counters.__slots__:
        assert getattr(snap, name) == getattr(counters, name), name
    assert snap.rejected == counters.rejected
    counters.received += 1
    counters.upload_errors[ErrorKind.TIMEOUT] += 1
    assert snap.received == counters.received - 1
    assert snap.upload_errors[ErrorKind.TIMEOUT] == counters.upload_errors[ErrorKind.TIMEOUT] - 1


def test_a_snapshot_carries_the_gauges_latency_and_proxy_counts() -> None:
    snap = _taken(budget_used_bytes=100, budget_total_bytes=4096, segments_queued=5)
    assert (snap.budget_used_bytes, snap.budget_total_bytes) == (100, 4096)
    assert (snap.segments_queued, snap.batches_queued) == (5, 0)
    assert (snap.proxy_requests, snap.proxy_errors) == (7, 2)
    assert snap.latency.count == 4
    assert snap.latency.last_s == 12.0


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.0, 0), (0.005, 0), (0.0051, 1), (1.0, 7), (10.0, 10), (10.5, 11), (300.0, 11)],
)
def test_latency_buckets_follow_prometheus_le(seconds: float, bucket: int) -> None:
    latency = UploadLatency()
    latency.observe(seconds)
    expected = [0] * (len(LATENCY_BOUNDS_S) + 1)
    expected[bucket] = 1
    assert latency.snapshot().buckets == tuple(expected)


async def test_the_snapshotter_numbers_frames_and_measures_uptime(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(5)
    counters = Counters()
    take = Snapshotter(
        counters,
        lambda: Gauges(segments_queued=counters.accepted),
        latency=UploadLatency(),
        proxy=ProxyCounters(),
        started_at=trio.current_time(),
    )
    counters.accepted = 4
    await trio.sleep(1.5)
    first, second = take(), take()
    assert (first.seq, first.uptime_s, first.segments_queued) == (1, 1.5, 4)
    assert second.seq == 2


def test_snapshots_round_trip_through_json() -> None:
    snap = _taken(budget_used_bytes=1, budget_total_bytes=2, segments_queued=3, batches_queued=4)
    assert from_json(to_json(snap)) == snap


def test_from_json_reads_missing_counters_as_zero_and_ignores_unknown_keys() -> None:
    snap = from_json({"seq": 2, "uptime_s": 1, "received": 5, "from_the_future": 1})
    assert snap == Snapshot(seq=2, uptime_s=1.0, received=5)


@pytest.mark.parametrize(
    "obj",
    [
        {"uptime_s": 1.0},
        {"seq": 1},
        {"seq": 1.5, "uptime_s": 1.0},
        {"seq": True, "uptime_s": 1.0},
        {"seq": 1, "uptime_s": "1"},
        {"seq": 1, "uptime_s": 1.0, "sent": "3"},
        {"seq": 1, "uptime_s": 1.0, "upload_errors": []},
        {"seq": 1, "uptime_s": 1.0, "latency": {"bounds_s": [1.0], "buckets": [0]}},
    ],
)
def test_from_json_refuses_malformed_snapshots(obj: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the one documented failure mode
        from_json(obj)


def _at(uptime_s: float, **fields: object) -> Snapshot:
    return Snapshot(seq=1, uptime_s=uptime_s, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prev", "cur", "expected"),
    [
        pytest.param(
            _at(10.0, received=100, sent=40, stdout_written=10),
            _at(12.0, received=300, sent=140, stdout_written=30),
            Rates(interval_s=2.0, received_per_s=100.0, delivered_per_s=60.0),
            id="per-second",
        ),
        pytest.param(
            _at(1.0, rejected_invalid_header=1, unprocessed=1),
            _at(1.5, rejected_invalid_header=2, rejected_missing_header=1, unprocessed=2),
            Rates(interval_s=0.5, rejected_per_s=6.0),
            id="rejected-includes-unprocessed",
        ),
        pytest.param(
            _at(1.0, upload_errors={ErrorKind.TIMEOUT: 1, ErrorKind.HTTP_5XX: 0}),
            _at(2.0, upload_errors={ErrorKind.TIMEOUT: 3, ErrorKind.HTTP_5XX: 4}),
            Rates(interval_s=1.0, upload_errors_per_s=6.0),
            id="errors-of-every-kind",
        ),
        pytest.param(
            _at(1.0, spillover=1, given_up=2),
            _at(2.0, spillover=4, given_up=7),
            Rates(interval_s=1.0, dropped_per_s=8.0),
            id="dropped-is-spillover-and-given-up",
        ),
        pytest.param(
            _at(1.0, latency=LatencySnapshot(count=2, sum_s=0.5)),
            _at(2.0, latency=LatencySnapshot(count=6, sum_s=1.5)),
            Rates(interval_s=1.0, latency_avg_s=0.25),
            id="latency-of-the-interval",
        ),
        pytest.param(_at(5.0, received=9), _at(5.0, received=10), Rates(), id="no-time"),
        pytest.param(_at(500.0, received=9), _at(2.0, received=1), Rates(), id="restarted"),
    ],
)
def test_rates(prev: Snapshot, cur: Snapshot, expected: Rates) -> None:
    assert rates(prev, cur) == expected


# --- /metrics text -----------------------------------------------------------------------------


def _families(snap: Snapshot) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    families: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(render_metrics(snap)):
        samples = families.setdefault(f"{family.name}:{family.type}", {})
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return families


def test_metrics_parse_as_prometheus_text_with_exact_values() -> None:
    snap = _taken(budget_used_bytes=1500, budget_total_bytes=4096, segments_queued=3)
    c = _counters()
    families = _families(snap)

    def value(family: str, sample: str, **labels: str) -> float:
        return families[family][sample, tuple(sorted(labels.items()))]

    p = "xray_trio_"
    assert value(f"{p}uptime_seconds:gauge", f"{p}uptime_seconds") == 9.5
    assert value(f"{p}segments_received:counter", f"{p}segments_received_total") == c.received
    assert value(f"{p}received_bytes:counter", f"{p}received_bytes_total") == c.bytes_received
    assert value(f"{p}segments_accepted:counter", f"{p}segments_accepted_total") == c.accepted
    rejected = (f"{p}segments_rejected:counter", f"{p}segments_rejected_total")
    assert value(*rejected, reason="invalid_header") == c.rejected_invalid_header
    assert value(*rejected, reason="missing_header") == c.rejected_missing_header
    assert value(f"{p}segments_spillover:counter", f"{p}segments_spillover_total") == c.spillover
    assert value(f"{p}segments_sent:counter", f"{p}segments_sent_total") == c.sent
    assert value(f"{p}batches_sent:counter", f"{p}batches_sent_total") == c.batches_sent
    assert value(f"{p}stdout_written:counter", f"{p}stdout_written_total") == c.stdout_written
    unprocessed = value(f"{p}segments_unprocessed:counter", f"{p}segments_unprocessed_total")
    assert unprocessed == c.unprocessed
    assert value(f"{p}upload_retries:counter", f"{p}upload_retries_total") == c.retries
    assert value(f"{p}segments_given_up:counter", f"{p}segments_given_up_total") == c.given_up
    for kind in ErrorKind:
        errors = value(f"{p}upload_errors:counter", f"{p}upload_errors_total", kind=kind.value)
        assert errors == c.upload_errors[kind]
    assert value(f"{p}buffer_bytes:gauge", f"{p}buffer_bytes", state="used") == 1500
    assert value(f"{p}buffer_bytes:gauge", f"{p}buffer_bytes", state="free") == 4096 - 1500
    assert value(f"{p}buffer_limit_bytes:gauge", f"{p}buffer_limit_bytes") == 4096
    assert value(f"{p}segments_queued:gauge", f"{p}segments_queued") == 3
    assert value(f"{p}batches_queued:gauge", f"{p}batches_queued") == 0
    assert value(f"{p}proxy_requests:counter", f"{p}proxy_requests_total") == 7
    assert value(f"{p}proxy_errors:counter", f"{p}proxy_errors_total") == 2

    histogram = families[f"{p}upload_duration_seconds:histogram"]
    name = f"{p}upload_duration_seconds"
    # Observed 0.004, 0.05, 0.3 and 12.0 seconds.
    assert histogram[f"{name}_bucket", (("le", "0.005"),)] == 1
    assert histogram[f"{name}_bucket", (("le", "0.05"),)] == 2
    assert histogram[f"{name}_bucket", (("le", "0.25"),)] == 2
    assert histogram[f"{name}_bucket", (("le", "0.5"),)] == 3
    assert histogram[f"{name}_bucket", (("le", "10.0"),)] == 3
    assert histogram[f"{name}_bucket", (("le", "+Inf"),)] == 4
    assert histogram[f"{name}_count", ()] == 4
    assert histogram[f"{name}_sum", ()] == pytest.approx(12.354)


def test_every_metric_has_help_and_type_and_gauges_have_no_total_suffix() -> None:
    text = render_metrics(_taken())
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert names == helped
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            assert name.startswith("xray_trio_")
            assert name.endswith("_total") == (kind == "counter"), line


def test_a_fresh_snapshot_renders_zeros() -> None:
    snap = Snapshot(seq=1, uptime_s=0.0)
    for family in text_string_to_metric_families(render_metrics(snap)):
        assert all(sample.value == 0 for sample in family.samples), family.name


def test_snapshot_fields_are_frozen() -> None:
    snap = Snapshot(seq=1, uptime_s=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.received = 1  # type: ignore[misc]
    assert isinstance(snap.upload_errors, types.MappingProxyType)
