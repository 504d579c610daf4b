"""Whatever arrives on the UDP port, the daemon keeps running and keeps relaying.

The port is open to any local process, so malformed datagrams are routine; the Go daemon logs
each refusal at Warn and carries on. The Warn texts are Go's, since operators grep for them.
"""

from __future__ import annotations

import random

from e2e_support import SDK_HEADER, Harness, as_bytes, body_of, data_file

REJECTED = {
    # datagram: the Warn message Go logs for it
    b"no newline": "Missing header or segment: no newline",
    b'{"format":"xml","version":1}\n{}': 'Invalid header: {"format":"xml","version":1}',
    b'{"format":"json","version":2}\n{}': 'Invalid header: {"format":"json","version":2}',
    b'{"format":"json","version":1}\n': 'Missing header or segment: {"format":"json","version":1}',
    b'{"format":"json","version":"1"}\n{}': 'Invalid header: {"format":"json","version":"1"}',
    b"garbage\n{}": "Invalid header: garbage",
}


def random_datagram(size: int) -> bytes:
    # Seeded, so a failure replays. Random bytes never form a valid header, so it is refused.
    return random.Random(20260515).randbytes(size)


def test_malformed_datagrams_are_refused_and_the_daemon_keeps_relaying(harness: Harness) -> None:
    daemon = harness.start()
    oversized = random_datagram(65507)
    non_utf8_header = b"\xff\xfe\x80\x81\n{}"
    harness.send(*REJECTED, oversized, non_utf8_header, b"")

    good = data_file("node-rich-01.bin")
    harness.send(good)
    harness.fake.wait_for_documents(1)

    assert daemon.alive()
    assert [as_bytes(doc) for doc in harness.fake.iter_documents()] == [body_of(good)]
    warnings = daemon.log_lines("Warn")
    for message in REJECTED.values():
        assert message in warnings, f"no Warn line {message!r}"
    # The 65,507 random bytes and the binary header are refused too (a Warn line each).
    refusals = [w for w in warnings if w.startswith(("Invalid header:", "Missing header or"))]
    assert len(refusals) >= len(REJECTED) + 2, refusals

    # Still healthy afterwards: a second good segment goes through the same way.
    second = data_file("py-simple-01.bin")
    harness.send(second)
    harness.fake.wait_for_documents(2)
    assert daemon.alive()


def test_body_that_is_not_utf8_does_not_stop_the_daemon(harness: Harness) -> None:
    # Go forwards the bytes as they are and lets X-Ray judge them; whether xray-trio forwards
    # or drops such a body, it must not crash, stall or poison the rest of the batch.
    daemon = harness.start()
    harness.send(SDK_HEADER + b'{"id":"\xff\xfe\x80","name":"\xc3\x28"}')
    good = data_file("py-rich-01.bin")
    harness.send(good)

    delivered = harness.fake.wait_for_documents(1)

    assert body_of(good) in map(as_bytes, delivered)
    assert daemon.alive()
    harness.send(data_file("node-simple-01.bin"))
    harness.fake.wait_for_documents(len(delivered) + 1)
