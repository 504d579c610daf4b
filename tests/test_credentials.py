"""Credentials: botocore's default chain, and ``-r`` AssumeRole against an STS fake on loopback.

The acceptance check is end to end: an upload to a fake X-Ray must be signed with the assumed
role's keys, which only the STS fake handed out.
"""

from __future__ import annotations

import datetime
import urllib.parse
from typing import TYPE_CHECKING

import pytest
import trio
from botocore.credentials import Credentials
from fake_xray import TRACE_SEGMENTS, FakeXRay
from test_proxy import check_sigv4

from tests.loopback import LoopbackServer, QuietHandler
from xray_trio.config import Config
from xray_trio.credentials import ROLE_SESSION_NAME, make_credential_source
from xray_trio.errors import ErrorKind, UploadError
from xray_trio.transport import HttpxTransport, open_http_client
from xray_trio.xray_client import XRayClient, encode_trace_segments

if TYPE_CHECKING:
    from collections.abc import Iterator

ROLE_ARN = "arn:aws:iam::123456789012:role/xray-writer"
REGION = "eu-west-1"

ASSUME_ROLE_RESPONSE = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:xray-daemon</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/xray-writer/xray-daemon</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId>
      <SecretAccessKey>assumed-secret-{n}</SecretAccessKey>
      <SessionToken>assumed-token-{n}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>req-{n}</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""

ACCESS_DENIED = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code>
  <Message>User: arn:aws:iam::123456789012:user/ops is not authorized to perform:
  sts:AssumeRole</Message>
  </Error><RequestId>denied</RequestId>
</ErrorResponse>"""


class FakeSTS(LoopbackServer):
    """STS on loopback: answers AssumeRole with numbered keys ``ASIAASSUMED<n>``."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], str]] = []
        """(form fields, Authorization header) per call."""
        self.lifetimes = [datetime.timedelta(hours=1)]
        """Credential lifetime per call; the last one repeats."""
        self.deny = False
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                form = dict(urllib.parse.parse_qsl(body.decode()))
                fake.calls.append((form, self.headers.get("Authorization", "")))
                n = len(fake.calls)
                lifetime = fake.lifetimes[min(n, len(fake.lifetimes)) - 1]
                expiration = datetime.datetime.now(datetime.UTC) + lifetime
                text = (
                    ACCESS_DENIED
                    if fake.deny
                    else ASSUME_ROLE_RESPONSE.format(
                        key=f"ASIAASSUMED{n}",
                        n=n,
                        expiration=expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    )
                )
                self.answer(403 if fake.deny else 200, text.encode(), "text/xml")

        super().__init__(Handler)


@pytest.fixture
def source_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSOURCE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "source-secret")


@pytest.fixture
def sts(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSTS]:
    with FakeSTS() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fake.url)
        yield fake


async def test_the_default_chain_reads_the_environment(source_keys: None) -> None:
    source = make_credential_source(role_arn="", region=REGION, limiter=trio.CapacityLimiter(1))
    keys = await source.get()
    assert (keys.access_key, keys.secret_key, keys.token) == ("AKIDSOURCE", "source-secret", None)


async def test_the_default_chain_reads_a_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    path = tmp_path / "credentials"  # type: ignore[operator]
    path.write_text("[ops]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_PROFILE", "ops")
    source = make_credential_source(role_arn="", region=REGION, limiter=trio.CapacityLimiter(1))
    assert (await source.get()).access_key == "AKIDPROFILE"


async def test_no_credentials_is_an_upload_error_not_a_crash() -> None:
    source = make_credential_source(role_arn="", region=REGION, limiter=trio.CapacityLimiter(1))
    with pytest.raises(UploadError, match="NoCredentialProviders") as caught:
        await source.get()
    assert (caught.value.kind, caught.value.retriable) == (ErrorKind.OTHER, True)


async def test_the_role_is_assumed_in_the_daemons_region_as_xray_daemon(
    source_keys: None, sts: FakeSTS
) -> None:
    source = make_credential_source(
        role_arn=ROLE_ARN, region=REGION, limiter=trio.CapacityLimiter(1)
    )
    keys = await source.get()
    assert (keys.access_key, keys.token) == ("ASIAASSUMED1", "assumed-token-1")
    [(form, authorization)] = sts.calls
    assert form["Action"] == "AssumeRole"
    assert form["RoleArn"] == ROLE_ARN
    assert form["RoleSessionName"] == ROLE_SESSION_NAME == "xray-daemon"
    # Signed with the chain's keys for the regional endpoint of the daemon's region.
    assert "Credential=AKIDSOURCE/" in authorization
    assert f"/{REGION}/sts/aws4_request" in authorization
    # Fresh credentials are reused without another call.
    assert (await source.get()).access_key == "ASIAASSUMED1"
    assert len(sts.calls) == 1


async def test_assumed_credentials_are_refreshed_before_they_expire(
    source_keys: None, sts: FakeSTS
) -> None:
    # Five minutes left is inside botocore's refresh window: the next use assumes again.
    sts.lifetimes = [datetime.timedelta(minutes=5), datetime.timedelta(hours=1)]
    source = make_credential_source(
        role_arn=ROLE_ARN, region=REGION, limiter=trio.CapacityLimiter(1)
    )
    assert (await source.get()).access_key == "ASIAASSUMED1"
    assert (await source.get()).access_key == "ASIAASSUMED2"
    assert (await source.get()).access_key == "ASIAASSUMED2"
    assert len(sts.calls) == 2


async def test_a_refused_assume_role_is_an_upload_error(source_keys: None, sts: FakeSTS) -> None:
    sts.deny = True
    source = make_credential_source(
        role_arn=ROLE_ARN, region=REGION, limiter=trio.CapacityLimiter(1)
    )
    with pytest.raises(UploadError, match=r"(?s)AccessDenied.*sts:AssumeRole") as caught:
        await source.get()
    assert caught.value.kind == ErrorKind.OTHER


async def test_uploads_are_signed_with_the_assumed_role(source_keys: None, sts: FakeSTS) -> None:
    source = make_credential_source(
        role_arn=ROLE_ARN, region=REGION, limiter=trio.CapacityLimiter(1)
    )
    config = Config(endpoint="", region=REGION)
    with FakeXRay() as xray:
        async with open_http_client(config, {}) as http:
            client = XRayClient(
                HttpxTransport(http, xray.url.rstrip("/")),
                endpoint=xray.url,
                region=REGION,
                credentials=source,
            )
            assert await client.put_trace_segments(encode_trace_segments([b'{"id":"1"}'])) == []
        [upload] = xray.requests_to(TRACE_SEGMENTS)
    headers = {name.lower(): value for name, value in upload.headers}
    key_id = check_sigv4(
        "POST",
        xray.url.rstrip("/") + TRACE_SEGMENTS,
        headers,
        upload.body,
        Credentials("ASIAASSUMED1", "assumed-secret-1", "assumed-token-1"),
        REGION,
    )
    assert key_id == "ASIAASSUMED1"
    assert headers["x-amz-security-token"] == "assumed-token-1"
