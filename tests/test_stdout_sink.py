"""The stdout sink writes each document as exactly one line that jq can read."""

from __future__ import annotations

import json

import pytest

from xray_trio.stdout_sink import as_json_line


@pytest.mark.parametrize(
    "document",
    [
        b'{"id": "1", "name": "a"}',
        b'{\n  "id": "1",\r\n  "name": "pretty"\n}',
        b'{"big": 1e999, "dup": 1, "dup": 2}',  # kept as sent: no re-encoding
        b"[" * 30000 + b"\n" + b"]" * 30000,  # too deep for json.loads: still one line
        b"not json\nat all",
    ],
)
def test_one_document_one_line_same_bytes_but_line_breaks(document: bytes) -> None:
    line = as_json_line(document)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line[:-1] == document.replace(b"\r", b" ").replace(b"\n", b" ")


def test_a_pretty_printed_document_stays_the_same_json() -> None:
    pretty = b'{\n  "id": "1",\n  "tags": ["a", "b"]\n}'
    assert json.loads(as_json_line(pretty)) == json.loads(pretty)
