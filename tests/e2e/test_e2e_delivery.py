"""Happy path: what SDKs send over UDP reaches X-Ray unchanged, batched and signed."""

from __future__ import annotations

import collections
import datetime
import json
import re

from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
from aws_xray_sdk.core.recorder import AWSXRayRecorder
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from e2e_support import (
    ACCESS_KEY_ID,
    REGION,
    SDK_HEADER,
    SECRET_ACCESS_KEY,
    Harness,
    as_bytes,
    body_of,
    data_file,
)

CAPTURES = [
    "py-simple-01.bin",
    "node-simple-01.bin",
    "py-rich-01.bin",
    "node-rich-01.bin",
    "node-streaming-01.bin",
    "py-unicode-01.bin",
    "py-big-65507-01.bin",
    "node-big-65507-01.bin",
]


class RecordingEmitter(UDPEmitter):  # type: ignore[misc]  # the SDK ships no types
    """The SDK's own UDP emitter, keeping a copy of each datagram exactly as it is sent."""

    def __init__(self, daemon_address: str) -> None:
        super().__init__(daemon_address)
        self.datagrams: list[bytes] = []

    def _send_data(self, data: str) -> None:
        # Same encoding as UDPEmitter._send_data, so these are the bytes on the wire.
        self.datagrams.append(data.encode("utf-8"))
        super()._send_data(data)


def raw_utf8_datagram() -> bytes:
    """A Node-style datagram whose body holds raw (unescaped) UTF-8, as Node SDKs send it."""
    doc = json.loads(body_of(data_file("node-simple-01.bin")))
    doc["name"] = "ünïcødé-名前"
    doc["annotations"] = {"city": "München ☕", "emoji": "🚀"}
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    assert any(byte > 0x7F for byte in body)
    return SDK_HEADER + body


def test_sdk_segments_arrive_byte_exact_in_batches_of_at_most_50(harness: Harness) -> None:
    harness.start()
    emitter = RecordingEmitter(f"127.0.0.1:{harness.udp_port}")
    recorder = AWSXRayRecorder()
    default_emitter = recorder.emitter
    try:
        recorder.configure(
            daemon_address=f"127.0.0.1:{harness.udp_port}",
            sampling=False,
            context_missing="LOG_ERROR",
            emitter=emitter,
            service="e2e",
        )
        for i in range(120):
            segment = recorder.begin_segment(f"e2e-{i}")
            segment.put_annotation("index", i)
            subsegment = recorder.begin_subsegment("work")
            assert subsegment is not None
            subsegment.put_metadata("note", f"segment {i} ü")
            recorder.end_subsegment()
            recorder.end_segment()
    finally:
        # The SDK never closes its sockets; the suite turns ResourceWarnings into errors.
        for sdk_emitter in (default_emitter, emitter):
            sdk_emitter._socket.close()
    assert len(emitter.datagrams) == 120, "one datagram per segment (subsegments embedded)"

    delivered = harness.fake.wait_for_documents(120)

    sent = collections.Counter(body_of(d) for d in emitter.datagrams)
    assert collections.Counter(map(as_bytes, delivered)) == sent
    sizes = [len(r.documents or []) for r in harness.fake.requests_to("/TraceSegments")]
    assert sizes, "no PutTraceSegments call"
    assert all(1 <= size <= 50 for size in sizes), sizes
    assert sum(sizes) == 120, f"documents uploaded more than once: {sizes}"


def test_captured_datagrams_arrive_byte_exact(harness: Harness) -> None:
    harness.start()
    datagrams = [data_file(name) for name in CAPTURES] + [raw_utf8_datagram()]
    assert len(data_file("py-big-65507-01.bin")) == 65507

    harness.send(*datagrams)
    delivered = harness.fake.wait_for_documents(len(datagrams))

    assert sorted(map(as_bytes, delivered)) == sorted(body_of(d) for d in datagrams)


def test_document_bytes_are_not_trimmed_and_spaced_header_is_accepted(harness: Harness) -> None:
    # Go forwards everything after the first newline as is: trailing whitespace and further
    # newlines included; and it accepts the README's header with spaces.
    body = body_of(data_file("py-simple-01.bin"))
    datagrams = [
        SDK_HEADER + body + b"\n",
        SDK_HEADER + b"  " + body + b"\r\n",
        b'{"format": "json", "version": 1}\n' + body_of(data_file("node-simple-01.bin")),
    ]
    harness.start()

    harness.send(*datagrams)
    delivered = harness.fake.wait_for_documents(len(datagrams))

    assert sorted(map(as_bytes, delivered)) == sorted(body_of(d) for d in datagrams)


SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 "
    r"Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/xray/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9-]+(?:;[a-z0-9-]+)*), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def test_put_trace_segments_is_sigv4_signed(harness: Harness) -> None:
    harness.start()
    harness.send(data_file("py-simple-01.bin"))
    harness.fake.wait_for_documents(1)
    request = harness.fake.requests_to("/TraceSegments")[0]

    assert request.method == "POST"
    authorization = request.header("Authorization")
    assert authorization is not None, request.headers
    match = SIGV4.fullmatch(authorization)
    assert match, authorization
    amz_date = request.header("X-Amz-Date")
    assert amz_date is not None, request.headers
    assert re.fullmatch(r"\d{8}T\d{6}Z", amz_date), amz_date
    signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    assert abs(datetime.datetime.now(datetime.UTC) - signed_at) < datetime.timedelta(minutes=5)
    assert match["key"] == ACCESS_KEY_ID
    assert match["date"] == amz_date[:8]
    assert match["region"] == REGION
    signed = match["signed"].split(";")
    assert signed == sorted(signed), "SigV4 lists signed headers sorted"
    assert {"host", "x-amz-date"} <= set(signed)

    # Recompute with botocore over the headers the daemon says it signed: any change to the
    # body, path, a signed header or the key derivation gives a different signature.
    headers = {name: value for name, value in request.headers if name.lower() in signed}
    assert len(headers) == len(signed), f"a signed header is missing from the request: {signed}"
    aws_request = AWSRequest(
        method=request.method,
        url=harness.fake.url + request.path,
        headers=headers,
        data=request.body,
    )
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "xray", REGION)
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    assert match["signature"] == expected, canonical


def test_uploads_carry_the_go_daemon_headers(harness: Harness) -> None:
    # X-Ray uses X-Amzn-Xray-Timestamp and the xray-agent User-Agent suffix to identify
    # daemon traffic (Go: pkg/conn/xray_client.go).
    harness.start()
    harness.send(data_file("node-simple-01.bin"))
    harness.fake.wait_for_documents(1)
    request = harness.fake.requests_to("/TraceSegments")[0]

    timestamp = request.header("X-Amzn-Xray-Timestamp")
    assert timestamp is not None, request.headers
    assert re.fullmatch(r"\d{10}\.\d{9}", timestamp), timestamp
    assert abs(float(timestamp) - request.arrived_wall_s) < 60
    user_agent = request.header("User-Agent") or ""
    assert "xray-agent/xray-daemon/" in user_agent, user_agent
    assert (request.header("Content-Type") or "").startswith("application/json"), request.headers
    assert json.loads(request.body) == {"TraceSegmentDocuments": request.documents}
