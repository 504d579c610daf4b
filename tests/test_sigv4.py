"""The fast signer must agree with botocore, byte for byte."""

from __future__ import annotations

import datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from xray_trio.sigv4 import PostSigner

MOMENT = datetime.datetime(2026, 11, 26, 15, 4, 5, tzinfo=datetime.UTC)


def _botocore_authorization(
    credentials: Credentials, url: str, headers: dict[str, str], body: bytes, region: str
) -> str:
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    request.context["timestamp"] = MOMENT.strftime("%Y%m%dT%H%M%SZ")
    auth = SigV4Auth(credentials, "xray", region)
    # add_auth() would stamp the current time; these are the steps it takes, at ours.
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize(
    ("credentials", "host", "path", "region"),
    [
        (
            Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            "xray.us-east-1.amazonaws.com",
            "/TraceSegments",
            "us-east-1",
        ),
        (
            Credentials("ASIATEMP", "secret", "token/with+chars=="),
            "127.0.0.1:4566",
            "/TelemetryRecords",
            "cn-north-1",
        ),
        (Credentials("AKID", "s"), "example.com:8443", "/base path/TraceSegments", "eu-west-1"),
    ],
)
def test_matches_botocore(credentials: Credentials, host: str, path: str, region: str) -> None:
    body = b'{"TraceSegmentDocuments":["{\\"id\\":\\"1\\"}"]}'
    headers = {
        "Content-Type": "application/json",
        "X-Amzn-Xray-Timestamp": "1795705445.123456789",
    }
    signer = PostSigner(host=host, region=region)
    ours = signer.sign(
        credentials.get_frozen_credentials(), path=path, headers=headers, body=body, now=MOMENT
    )
    theirs = _botocore_authorization(credentials, f"https://{host}{path}", headers, body, region)
    assert ours["Authorization"] == theirs
    assert ours["X-Amz-Date"] == "20261126T150405Z"
    assert ours.get("X-Amz-Security-Token") == credentials.token
    assert ours["Host"] == host


def test_the_signing_key_is_derived_once_per_day() -> None:
    signer = PostSigner(host="h", region="us-east-1")
    creds = Credentials("AKID", "secret").get_frozen_credentials()
    signer.sign(creds, path="/x", headers={}, body=b"", now=MOMENT)
    key = signer._key_cache
    signer.sign(creds, path="/x", headers={}, body=b"1", now=MOMENT + datetime.timedelta(hours=1))
    assert signer._key_cache is key
    signer.sign(creds, path="/x", headers={}, body=b"", now=MOMENT + datetime.timedelta(days=1))
    assert signer._key_cache[1] == "20261127"
