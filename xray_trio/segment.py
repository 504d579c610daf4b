"""Splitting a datagram into header and document, with the Go daemon's exact rules.

A datagram is ``{"format": "json", "version": 1}`` + ``\\n`` + one segment document. The body is
never parsed or changed here: it travels to X-Ray as the bytes the SDK sent. Rejections are
values, not exceptions, so the receiver's loop stays a plain ``if``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

# What every SDK sends; checked with one startswith() so the common case never touches JSON.
_CANONICAL_HEADER = b'{"format":"json","version":1}\n'
_CANONICAL_LEN = len(_CANONICAL_HEADER)


class RejectReason(enum.Enum):
    MISSING_HEADER = "missing_header"
    """No newline, or nothing after it (Go: ``Missing header or segment``)."""
    INVALID_HEADER = "invalid_header"
    """The header is not JSON naming format ``json`` and version 1 (Go: ``Invalid header``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    header: bytes
    """The bytes before the first newline (the whole datagram if there is none)."""
    has_newline: bool


def split_datagram(data: bytes) -> bytes | Rejected:
    """Return the document of a datagram, or why it is refused."""
    if data.startswith(_CANONICAL_HEADER):
        if len(data) > _CANONICAL_LEN:
            return data[_CANONICAL_LEN:]
        return Rejected(RejectReason.MISSING_HEADER, _CANONICAL_HEADER[:-1], True)
    header, newline, body = data.partition(b"\n")
    if not body:
        return Rejected(RejectReason.MISSING_HEADER, header, bool(newline))
    if not is_valid_header(header):
        return Rejected(RejectReason.INVALID_HEADER, header, True)
    return body


class _NotGoJson(ValueError):
    """The text is JSON to Python but not to Go (NaN, Infinity)."""


def _refuse_constant(name: str) -> Any:
    raise _NotGoJson(name)


def is_valid_header(header: bytes) -> bool:
    """Go's check: decode into ``{format string; version int}``, ignoring errors.

    Go's ``encoding/json`` matches keys case-insensitively with the last duplicate winning, keeps
    a field's old value when the JSON value has the wrong type (``"1"`` or ``1.0`` for version),
    and yields zero values for text that is not valid JSON. The header is valid when format
    equals ``json`` ignoring case and version is exactly 1.
    """
    try:
        decoded = json.loads(
            header.decode("utf-8", "replace"),
            object_pairs_hook=_Pairs,
            parse_constant=_refuse_constant,
        )
    except ValueError:
        return False
    if not isinstance(decoded, _Pairs):
        return False
    format_, version = "", 0
    for key, value in decoded:
        folded = key.casefold()
        if folded == "format" and isinstance(value, str):
            format_ = value
        elif folded == "version" and type(value) is int:
            version = value
    return format_.casefold() == "json" and version == 1


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in order, duplicates kept, as Go walks them."""
