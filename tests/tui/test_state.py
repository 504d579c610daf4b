"""Dashboard bookkeeping and cell formatting: pure functions, table-driven."""

from __future__ import annotations

import pytest
from tui_support import TRACE_A, TRACE_B, document, sample_events, sample_segments, seen, snap

from xray_trio.events import Lost, Rejected
from xray_trio.tui import format as fmt
from xray_trio.tui.state import Dashboard, grouped_rows, matches, newest_rows


def test_rates_are_deltas_between_snapshots():
    board = Dashboard()
    board.ingest(snap(1, received=100, sent=50))
    assert board.current("received") == 0.0  # one frame: no interval yet
    board.ingest(snap(3, received=300, sent=50, stdout_written=40, spillover=4))
    assert board.current("received") == 100.0
    assert board.current("sent") == 20.0  # X-Ray and local sinks together
    assert board.current("dropped") == 2.0


def test_a_restarted_daemon_does_not_produce_negative_rates():
    board = Dashboard()
    board.ingest(snap(5, received=500))
    board.ingest(snap(1, received=10))
    assert board.current("received") == 0.0
    assert board.rates.received_per_s == 0.0


def test_history_is_bounded():
    board = Dashboard(history=5, max_segments=3, max_rejected=2)
    for seq in range(1, 20):
        board.ingest(snap(seq, received=seq))
        board.ingest(seen(document("n"), seq))
        board.ingest(Rejected(reason="invalid_header", head=b"x"))
    assert len(board.series["received"]) == 5
    assert [row.seq for row in board.segments] == [17, 18, 19]
    assert len(board.rejected) == 2
    assert board.segments_seen == 19
    assert board.rejected_seen == 19


def test_sample_session_fills_every_panel():
    board = Dashboard()
    board.ingest_all(sample_events())
    board.ingest(Lost(total=7))
    assert board.snapshot is not None
    assert board.snapshot.seq == 7
    assert board.errors[0].given_up  # newest first
    assert board.rejected[0].reason == "missing_header"
    assert board.dropped == {"spillover": 3}
    assert board.lost == 7


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        ("", True),
        ("CHECK", True),  # name, any case
        (TRACE_A[-8:], True),  # trace id
        ("89abcdef", True),  # id
        ("customer", True),  # annotation key
        ("c-101", True),  # annotation value
        ("c-999", False),
    ],
)
def test_filter_matches(needle, expected):
    doc = seen(document("checkout", annotations={"customer": "c-101"}), 0)
    assert matches(doc, needle) is expected


def test_newest_rows_filter_and_limit():
    board = Dashboard()
    board.ingest_all(sample_segments())
    names = [row.seen.name for row in newest_rows(board.segments, "", 3)]
    assert names == [None, "node-in-progress", "node-rich"]
    only = newest_rows(board.segments, "orders", 10)
    assert [row.seen.name for row in only] == ["orders-api"]


def test_grouped_rows_keep_a_trace_together_and_filter_by_any_member():
    board = Dashboard()
    docs = sample_segments()
    board.ingest_all([docs[0], docs[2], docs[1]])  # B arrives between A's two documents
    rows = grouped_rows(board.segments, "", 10)
    assert [(depth, row.seen.name) for depth, row in rows] == [
        (0, "checkout"),
        (1, "db-query"),
        (0, "orders-api"),
    ]
    assert [row.seen.trace_id for _, row in grouped_rows(board.segments, "db-", 10)] == [
        TRACE_A,
        TRACE_A,
    ]
    assert TRACE_B not in {row.seen.trace_id for _, row in grouped_rows(board.segments, "db", 10)}


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (0.25, "0.25"), (12.5, "12.5"), (950, "950"), (12_345, "12.3k"), (2.5e6, "2.5M")],
)
def test_rate(value, text):
    assert fmt.rate(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(10, "10 B"), (1536, "1.5 KB"), (64 * 1024 * 1024, "64.0 MB")]
)
def test_size(value, text):
    assert fmt.size(value) == text


def test_head_escapes_what_is_not_printable():
    assert fmt.head(b'{"a":1}\n\x00\\') == '{"a":1}\\n\\x00\\\\'
    assert fmt.head(b"x" * 60, limit=4) == "xxxx…"


def test_duration_and_flags():
    doc = seen(document("n", duration=1.5, fault=True), 0)
    assert fmt.duration(doc) == "1.50 s"
    assert fmt.flags(doc) == "·F·"
    assert fmt.duration(seen(b"{}", 0)) == ""


def test_pretty_json_falls_back_to_the_raw_text():
    assert fmt.pretty_json('{"a":1}') == ('{\n  "a": 1\n}', True)
    assert fmt.pretty_json("{nope") == ("{nope", False)


def test_uptime_and_bar():
    assert fmt.uptime(3723) == "1h02m03s"
    assert fmt.uptime(65) == "1m05s"
    assert fmt.bar(1, 4, 8) == ("██░░░░░░", 0.25)
    assert fmt.bar(1, 0, 2) == ("░░", 0.0)
