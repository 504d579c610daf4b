"""The datagram rules of the Go daemon (go-daemon-spec §3, tracesegment and util tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xray_trio.segment import Rejected, RejectReason, is_valid_header, split_datagram

DATAGRAMS = Path(__file__).parent / "data" / "datagrams"


@pytest.mark.parametrize("path", sorted(DATAGRAMS.glob("*.bin")), ids=lambda p: p.stem)
def test_real_sdk_datagrams_yield_their_body_unchanged(path: Path) -> None:
    data = path.read_bytes()
    assert split_datagram(data) == data[data.index(b"\n") + 1 :]


@pytest.mark.parametrize(
    ("data", "body"),
    [
        (b'{"format":"json","version":1}\n{}', b"{}"),
        (b'{"format": "json", "version": 1}\n{"a":1}', b'{"a":1}'),  # the README's spaced form
        (b'{"format":"jSoN","version":1}\nx', b"x"),  # Go compares the format ignoring case
        (b'{"FORMAT":"json","Version":1}\nx', b"x"),  # and matches keys ignoring case
        (b'{"version":1,"format":"json","extra":[1,{"a":2}]}\nx', b"x"),
        (b' {"format":"json","version":1}\r\nx', b"x"),  # JSON whitespace includes \r
        (b'{"format":"json","version":1}\nnot json at all', b"not json at all"),  # never parsed
        (b'{"format":"json","version":1}\n{"a":1}\n{"b":2}', b'{"a":1}\n{"b":2}'),  # first \n
        (b'{"format":"json","version":1}\n\xff\xfe', b"\xff\xfe"),  # bytes kept as sent
        (b'{"format":"xml","format":"json","version":1}\nx', b"x"),  # last duplicate wins
        (b'{"version":1,"version":"1","format":"json"}\nx', b"x"),  # wrong type keeps old
    ],
)
def test_accepted(data: bytes, body: bytes) -> None:
    assert split_datagram(data) == body


@pytest.mark.parametrize(
    ("data", "reason", "header", "has_newline"),
    [
        (b"garbage", RejectReason.MISSING_HEADER, b"garbage", False),
        (b'{"format":"json","version":1}', RejectReason.MISSING_HEADER, None, False),
        (b'{"format":"json","version":1}\n', RejectReason.MISSING_HEADER, None, True),
        (b'{"format": "json", "version": 1}\n', RejectReason.MISSING_HEADER, None, True),
        (b'{"format":"xml","version":1}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json","version":2}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json","version":"1"}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json","version":1.0}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json","version":1e0}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json","version":true}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json"}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"version":1}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json","version":1\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'{"format":"json","version":1,"x":NaN}\n{}', RejectReason.INVALID_HEADER, None, True),
        (b'[{"format":"json","version":1}]\n{}', RejectReason.INVALID_HEADER, None, True),
        (b"null\n{}", RejectReason.INVALID_HEADER, None, True),
        (b"\n{}", RejectReason.INVALID_HEADER, b"", True),
        (b"\xff\xfe\n{}", RejectReason.INVALID_HEADER, b"\xff\xfe", True),
    ],
)
def test_rejected(
    data: bytes, reason: RejectReason, header: bytes | None, has_newline: bool
) -> None:
    result = split_datagram(data)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert result.header == (data.partition(b"\n")[0] if header is None else header)
    assert result.has_newline is has_newline


def test_go_tracesegment_cases() -> None:
    assert is_valid_header(b'{"format":"json","version":1}')
    assert is_valid_header(b'{"format":"jSoN","version":1}')
    assert not is_valid_header(b'{"format":"json","version":2}')
    assert not is_valid_header(b'{"format":"xml","version":1}')
