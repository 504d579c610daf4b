"""X-Ray misbehaving, and the daemon being stopped: nothing accepted is lost.

The Go daemon makes two attempts and then drops a batch; xray-trio retries throttling, 5xx and
timeouts with back-off until the batch is delivered, never retries a request X-Ray refused
(4xx), and resends unprocessed segments once.
"""

from __future__ import annotations

import collections
import json
import signal
import time
import zlib
from typing import TYPE_CHECKING

import pytest
from e2e_support import SDK_HEADER, Harness, as_bytes, body_of, data_file
from fake_xray import TRACE_SEGMENTS, Reply

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def make_datagrams(n: int, tag: str) -> list[bytes]:
    """``n`` distinct small segments in the Python SDK's format (unique ids and names)."""
    template = json.loads(body_of(data_file("py-simple-01.bin")))
    datagrams = []
    for i in range(n):
        doc = dict(template, id=f"{zlib.crc32(tag.encode()):08x}{i:08x}", name=f"{tag}-{i}")
        datagrams.append(SDK_HEADER + json.dumps(doc).encode())
    return datagrams


def assert_delivered_exactly(harness: Harness, datagrams: list[bytes]) -> None:
    delivered = collections.Counter(map(as_bytes, harness.fake.delivered_documents()))
    assert delivered == collections.Counter(body_of(d) for d in datagrams)


# Three failures in a row: more than the Go daemon's attempts, so a port that merely copied
# Go's retry count loses the batch and fails here.
@pytest.mark.parametrize(
    "failures",
    [
        pytest.param([Reply.error(500), Reply.error(503), Reply.error(500)], id="5xx"),
        pytest.param([Reply.throttle(), Reply.throttle(), Reply.throttle()], id="throttled-429"),
    ],
)
def test_failed_uploads_are_retried_until_delivered(
    harness: Harness, failures: list[Reply]
) -> None:
    harness.fake.script(TRACE_SEGMENTS, *failures)
    harness.start()
    datagrams = make_datagrams(5, "retry")

    harness.send(*datagrams)
    harness.fake.wait_for_documents(len(datagrams))

    requests = harness.fake.requests_to(TRACE_SEGMENTS)
    assert [r.reply.status for r in requests[: len(failures)]] == [f.status for f in failures]
    # The failed attempts carried the very documents that were finally delivered.
    sent = sorted(body_of(d) for d in datagrams)
    for failed in requests[: len(failures)]:
        assert sorted(map(as_bytes, failed.documents or [])) == sent
    assert_delivered_exactly(harness, datagrams)
    assert harness.fake.requests_to(TRACE_SEGMENTS)[-1].reply.status == 200


def test_hanging_upload_times_out_and_is_retried(harness: Harness) -> None:
    hang_s = 6.0
    harness.fake.hang_next(1, hang_s)
    harness.start()
    datagrams = make_datagrams(3, "hang")

    harness.send(*datagrams)
    harness.fake.wait_for_documents(len(datagrams), timeout_s=hang_s + 4)

    first, *others = harness.fake.requests_to(TRACE_SEGMENTS)
    retry = others[0]
    gap = retry.arrived_at - first.arrived_at
    # The daemon gave up on its own request timeout (2 s), well before the endpoint answered.
    assert 1.5 <= gap < hang_s - 1, f"retry came {gap:.2f} s after the hanging request"
    assert sorted(retry.documents or []) == sorted(first.documents or [])
    assert_delivered_exactly(harness, datagrams)


def test_rejected_batch_is_not_retried_and_the_pipeline_goes_on(harness: Harness) -> None:
    # A 400 will never succeed; retrying it would only hold budget (and X-Ray's rate limit).
    harness.fake.script(TRACE_SEGMENTS, Reply.bad_request())
    daemon = harness.start()
    refused = make_datagrams(3, "refused")
    harness.send(*refused)
    harness.fake.wait_for_requests(1)

    later = make_datagrams(2, "later")
    harness.send(*later)
    harness.fake.wait_for_documents(len(later))

    statuses = [r.reply.status for r in harness.fake.requests_to(TRACE_SEGMENTS)]
    assert statuses == [400, 200], statuses
    assert_delivered_exactly(harness, later)
    assert daemon.alive()
    assert daemon.log_lines("Error"), "a dropped batch must be logged at Error level"


def doc_id(datagram: bytes) -> str:
    return str(json.loads(body_of(datagram))["id"])


def test_unprocessed_segments_get_one_more_try_then_are_logged(harness: Harness) -> None:
    # X-Ray refuses part of a batch under load; xray-trio resends those once (Go never does)
    # and logs what is still refused with Go's Error text instead of retrying forever.
    datagrams = make_datagrams(4, "unprocessed")
    twice, once = doc_id(datagrams[0]), doc_id(datagrams[1])

    def pick(*ids: str) -> Callable[[Sequence[str]], list[str]]:
        return lambda docs: [d for d in docs if json.loads(d)["id"] in ids]

    harness.fake.script(
        TRACE_SEGMENTS,
        Reply.unprocess(pick(twice, once), error_code="ThrottledException", message="slow down"),
        Reply.unprocess(pick(twice), error_code="ThrottledException", message="slow down"),
    )
    daemon = harness.start()

    harness.send(*datagrams)
    harness.fake.wait_for_requests(2)
    daemon.wait_until(
        "the second refusal to be logged",
        lambda: any(m.startswith("Unprocessed trace ") for m in daemon.log_lines("Error")),
        timeout_s=10,
    )
    # A later segment goes through on its own: the twice-refused one is not sent a third time.
    later = make_datagrams(1, "after-unprocessed")
    harness.send(*later)
    harness.fake.wait_for_documents(len(datagrams) - 1 + len(later))

    first, retry, third = harness.fake.requests_to(TRACE_SEGMENTS)
    assert len(first.documents or []) == len(datagrams)
    assert sorted(json.loads(d)["id"] for d in retry.documents or []) == sorted([twice, once])
    assert [as_bytes(d) for d in third.documents or []] == [body_of(later[0])]
    assert_delivered_exactly(harness, datagrams[1:] + later)
    trace_id = json.loads(body_of(datagrams[0]))["trace_id"]
    refusals = [m for m in daemon.log_lines("Error") if m.startswith("Unprocessed trace ")]
    assert len(refusals) == 1, refusals
    assert refusals[0].startswith(f"Unprocessed trace {trace_id}, segment: "), refusals
    assert any(
        m.startswith("Sent batch of 4 segments but had 2 Unprocessed segments (")
        for m in daemon.log_lines("Info")
    ), daemon.output()


SIGNAL_WORDS = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupt"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_flushes_the_partial_batch_and_exits_0(
    harness: Harness, signum: signal.Signals
) -> None:
    daemon = harness.start()
    # The idle flush ticks every second from whenever the batcher last sent, so wait for a
    # lone primer to go out: the next tick is then a full second away.
    primer = make_datagrams(1, f"primer-{signum.name}")
    harness.send(*primer)
    harness.fake.wait_for_documents(1)
    datagrams = make_datagrams(10, signum.name)
    harness.send(*datagrams)
    # Long enough for the daemon to read ten loopback datagrams, well inside that second, so
    # the documents are still waiting in the batcher when the signal lands.
    time.sleep(0.2)
    assert len(harness.fake.requests_to(TRACE_SEGMENTS)) == 1, "flushed before the signal"

    daemon.signal(signum)

    assert daemon.wait_exit() == 0
    assert_delivered_exactly(harness, primer + datagrams)
    assert f"Got shutdown signal: {SIGNAL_WORDS[signum]}" in daemon.log_lines("Info")


def test_sigterm_while_x_ray_fails_delivers_everything_after_recovery(harness: Harness) -> None:
    # Five failures spread over the two batches: at least one batch fails three times.
    harness.fake.fail_next(5, 500)
    daemon = harness.start()
    # 50 fill a batch that goes out (and fails) at once; 10 more wait in the batcher.
    datagrams = make_datagrams(60, "sigterm")
    harness.send(*datagrams)
    harness.fake.wait_for_requests(1)
    time.sleep(0.2)  # let the daemon read the last ten datagrams before its socket closes

    daemon.signal(signal.SIGTERM)

    assert daemon.wait_exit() == 0
    assert_delivered_exactly(harness, datagrams)
    statuses = [r.reply.status for r in harness.fake.requests_to(TRACE_SEGMENTS)]
    assert statuses.count(500) == 5, statuses


def test_log_rotation_signals_are_ignored_like_go(harness: Harness) -> None:
    daemon = harness.start()
    daemon.signal(signal.SIGUSR1)
    daemon.signal(signal.SIGUSR2)
    datagrams = make_datagrams(3, "after-usr1")
    harness.send(*datagrams)
    harness.fake.wait_for_documents(3)  # still alive and relaying
    assert daemon.alive()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
