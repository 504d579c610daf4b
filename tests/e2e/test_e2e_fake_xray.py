"""The fake endpoint itself: if it answered wrongly, the end-to-end tests would prove nothing."""

from __future__ import annotations

import time

import httpx
import pytest
from fake_xray import TELEMETRY_RECORDS, TRACE_SEGMENTS, FakeXRay, Reply


def put(client: httpx.Client, *docs: str) -> httpx.Response:
    return client.post(TRACE_SEGMENTS, json={"TraceSegmentDocuments": list(docs)})


def test_scripted_answers_then_default_answers(fake_xray: FakeXRay) -> None:
    fake_xray.script(TRACE_SEGMENTS, Reply.error(503), Reply.throttle(), Reply.bad_request())
    with httpx.Client(base_url=fake_xray.url) as client:
        answers = [put(client, '{"id":"a"}') for _ in range(4)]
        telemetry = client.post(TELEMETRY_RECORDS, json={"TelemetryRecords": []})

    assert [a.status_code for a in answers] == [503, 429, 400, 200]
    assert answers[1].json() == {"__type": "ThrottlingException", "message": "Rate exceeded"}
    assert answers[3].json() == {"UnprocessedTraceSegments": []}
    assert telemetry.json() == {}
    assert fake_xray.delivered_documents() == ['{"id":"a"}']
    assert [r.path for r in fake_xray.requests] == [TRACE_SEGMENTS] * 4 + [TELEMETRY_RECORDS]


def test_unprocessed_documents_are_reported_and_not_delivered(fake_xray: FakeXRay) -> None:
    fake_xray.script(TRACE_SEGMENTS, Reply.unprocess(error_code="Boom", message="no"))
    with httpx.Client(base_url=fake_xray.url) as client:
        answer = put(client, '{"id": "first"}', '{"id":"second"}').json()

    assert answer == {
        "UnprocessedTraceSegments": [{"Id": "first", "ErrorCode": "Boom", "Message": "no"}]
    }
    assert fake_xray.delivered_documents() == ['{"id":"second"}']


def test_hang_outlasts_a_client_timeout_and_waits_are_bounded(fake_xray: FakeXRay) -> None:
    fake_xray.hang_next(1, seconds=5.0)
    started = time.monotonic()
    with (
        httpx.Client(base_url=fake_xray.url, timeout=0.3) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        put(client, '{"id":"late"}')
    with pytest.raises(AssertionError, match=r"waited 0\.2 s for 1 documents"):
        fake_xray.wait_for_documents(1, timeout_s=0.2)

    assert time.monotonic() - started < 2
    assert fake_xray.delivered_documents() == []
