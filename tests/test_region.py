"""Region, endpoint and host identity, against an IMDS fake that insists on IMDSv2 tokens."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.loopback import LoopbackServer, QuietHandler
from xray_trio.config import Config
from xray_trio.errors import StartupError
from xray_trio.region import NO_REGION, instance_identity, resolve_region, xray_endpoint

if TYPE_CHECKING:
    import logging
    from collections.abc import Iterator
    from pathlib import Path

    from tests.logs import Lines

TOKEN = "imds-token-123"
METADATA = {
    "placement/availability-zone/": "eu-central-1b",
    "hostname": "ip-10-1-2-3.eu-central-1.compute.internal",
    "instance-id": "i-0abc123def4567890",
}


class FakeIMDS(LoopbackServer):
    """EC2 instance metadata on loopback. With ``v2_only`` a GET without the session token
    gets 401, as on instances set to ``HttpTokens: required`` (issue #203); without it the
    token endpoint is missing (403), as on old IMDSv1-only setups."""

    def __init__(self, *, v2_only: bool = True) -> None:
        self.v2_only = v2_only
        self.requests: list[tuple[str, str, str | None]] = []
        fake = self

        class Handler(QuietHandler):
            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path, None))
                if self.path == "/latest/api/token" and fake.v2_only:
                    assert self.headers["x-aws-ec2-metadata-token-ttl-seconds"]
                    self.answer(200, TOKEN.encode())
                else:
                    self.answer(403, b"")

            def do_GET(self) -> None:
                token = self.headers.get("x-aws-ec2-metadata-token")
                fake.requests.append(("GET", self.path, token))
                if fake.v2_only and token != TOKEN:
                    self.answer(401, b"")
                    return
                value = METADATA.get(self.path.removeprefix("/latest/meta-data/"))
                self.answer(404, b"") if value is None else self.answer(200, value.encode())

        super().__init__(Handler)


@pytest.fixture
def imds() -> Iterator[FakeIMDS]:
    with FakeIMDS() as fake:
        yield fake


def imds_env(fake: FakeIMDS, **extra: str) -> dict[str, str]:
    return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": fake.url + "/", **extra}


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("us-west-1", "https://xray.us-west-1.amazonaws.com"),
        ("cn-north-1", "https://xray.cn-north-1.amazonaws.com.cn"),
        ("cn-northwest-1", "https://xray.cn-northwest-1.amazonaws.com.cn"),
        ("us-gov-west-1", "https://xray.us-gov-west-1.amazonaws.com"),
        ("us-gov-east-1", "https://xray.us-gov-east-1.amazonaws.com"),
        ("us-iso-east-1", "https://xray.us-iso-east-1.c2s.ic.gov"),
        ("us-isob-east-1", "https://xray.us-isob-east-1.sc2s.sgov.gov"),
        # Regions newer than botocore's endpoint data fall back to Go's suffix rules.
        ("cn-future-9", "https://xray.cn-future-9.amazonaws.com.cn"),
        ("us-iso-future-9", "https://xray.us-iso-future-9.c2s.ic.gov"),
        ("us-isob-future-9", "https://xray.us-isob-future-9.sc2s.sgov.gov"),
        ("xx-future-9", "https://xray.xx-future-9.amazonaws.com"),
    ],
)
def test_endpoint_follows_the_regions_partition(
    region: str, endpoint: str, logger: logging.Logger, lines: Lines
) -> None:
    assert xray_endpoint(Config(), region, logger) == endpoint
    assert lines.lines == [("DEBUG", f"Using Endpoint: {endpoint}")]


def test_the_configured_endpoint_wins(logger: logging.Logger, lines: Lines) -> None:
    config = Config(endpoint="http://127.0.0.1:4566/")
    assert xray_endpoint(config, "cn-north-1", logger) == "http://127.0.0.1:4566"
    assert lines.lines == [
        ("DEBUG", "Using Endpoint read from Config file: http://127.0.0.1:4566/")
    ]


def test_flag_or_config_region_beats_aws_region(
    imds: FakeIMDS, logger: logging.Logger, lines: Lines
) -> None:
    env = imds_env(imds, AWS_REGION="us-east-2")
    assert resolve_region(Config(region="ap-south-1"), logger, env) == "ap-south-1"
    assert lines.lines == [
        ("DEBUG", "Fetch region ap-south-1 from commandline/config file"),
        ("INFO", "Using region: ap-south-1"),
    ]
    assert imds.requests == []


def test_aws_region_beats_metadata(imds: FakeIMDS, logger: logging.Logger, lines: Lines) -> None:
    assert resolve_region(Config(), logger, imds_env(imds, AWS_REGION="us-east-2")) == "us-east-2"
    assert ("DEBUG", "Fetch region us-east-2 from environment variables") in lines.lines
    assert imds.requests == []


def test_imdsv2_token_is_fetched_and_sent(
    imds: FakeIMDS, logger: logging.Logger, lines: Lines
) -> None:
    assert resolve_region(Config(), logger, imds_env(imds)) == "eu-central-1"
    assert imds.requests == [
        ("PUT", "/latest/api/token", None),
        ("GET", "/latest/meta-data/placement/availability-zone/", TOKEN),
    ]
    assert ("DEBUG", "Fetch region eu-central-1 from ec2 metadata") in lines.lines


def test_imdsv1_is_used_when_no_token_can_be_had(logger: logging.Logger) -> None:
    with FakeIMDS(v2_only=False) as imds:
        assert resolve_region(Config(), logger, imds_env(imds)) == "eu-central-1"
    assert imds.requests[-1] == ("GET", "/latest/meta-data/placement/availability-zone/", None)


def test_no_metadata_service_means_no_region(logger: logging.Logger, lines: Lines) -> None:
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9/"}
    with pytest.raises(StartupError, match=f"^{NO_REGION}$"):
        resolve_region(Config(), logger, env)
    assert [level for level, _ in lines.lines] == ["ERROR"]
    assert lines.lines[0][1].startswith("Unable to fetch region from EC2 metadata: ")


def test_ecs_metadata_file_gives_the_tasks_region(
    tmp_path: Path, imds: FakeIMDS, logger: logging.Logger
) -> None:
    path = tmp_path / "ecs.json"
    path.write_text(json.dumps({"TaskARN": "arn:aws:ecs:us-east-1:012345678910:task/abc"}))
    env = imds_env(
        imds, ECS_ENABLE_CONTAINER_METADATA="True", ECS_CONTAINER_METADATA_FILE=str(path)
    )
    assert resolve_region(Config(), logger, env) == "us-east-1"
    assert imds.requests == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Unable to open ECS metadata file: "),
        ("{not json", "Unable to read ECS metadata file contents: "),
        ('{"Cluster": "c"}', "Unable to read ECS metadata file contents: "),
    ],
)
def test_a_bad_ecs_metadata_file_is_logged(
    tmp_path: Path, content: str | None, message: str, logger: logging.Logger, lines: Lines
) -> None:
    path = tmp_path / "ecs.json"
    if content is not None:
        path.write_text(content)
    env = {"ECS_ENABLE_CONTAINER_METADATA": "true", "ECS_CONTAINER_METADATA_FILE": str(path)}
    with pytest.raises(StartupError, match=f"^{NO_REGION}$"):
        resolve_region(Config(), logger, env)
    assert lines.lines[0][0] == "ERROR"
    assert lines.lines[0][1].startswith(message)


def test_local_mode_uses_the_sdk_chain_and_never_asks_imds(
    imds: FakeIMDS, monkeypatch: pytest.MonkeyPatch, logger: logging.Logger, lines: Lines
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "sa-east-1")
    assert resolve_region(Config(local_mode=True), logger, imds_env(imds)) == "sa-east-1"
    assert ("DEBUG", "Fetched region sa-east-1 from config") in lines.lines
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(StartupError, match=f"^{NO_REGION}$"):
        resolve_region(Config(local_mode=True), logger, imds_env(imds))
    assert imds.requests == []


def test_aws_default_region_is_ignored_outside_local_mode(
    monkeypatch: pytest.MonkeyPatch, logger: logging.Logger
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "sa-east-1")
    with FakeIMDS() as imds:
        assert resolve_region(Config(), logger, imds_env(imds)) == "eu-central-1"


def test_host_identity_comes_from_imds_with_a_token(imds: FakeIMDS, logger: logging.Logger) -> None:
    identity = instance_identity(imds_env(imds), logger, local_mode=False)
    assert (identity.hostname, identity.instance_id) == (
        METADATA["hostname"],
        METADATA["instance-id"],
    )
    assert [r for r in imds.requests if r[0] == "GET"] == [
        ("GET", "/latest/meta-data/hostname", TOKEN),
        ("GET", "/latest/meta-data/instance-id", TOKEN),
    ]


def test_host_identity_from_the_environment_skips_imds(
    imds: FakeIMDS, logger: logging.Logger
) -> None:
    env = imds_env(imds, AWS_HOSTNAME="web-1", AWS_INSTANCE_ID="i-42")
    identity = instance_identity(env, logger, local_mode=False)
    assert (identity.hostname, identity.instance_id) == ("web-1", "i-42")
    assert instance_identity(imds_env(imds), logger, local_mode=True).hostname == ""
    assert imds.requests == []


def test_unreachable_imds_leaves_the_identity_empty(logger: logging.Logger, lines: Lines) -> None:
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9/"}
    identity = instance_identity(env, logger, local_mode=False)
    assert (identity.hostname, identity.instance_id) == ("", "")
    assert [(level, text.split(":")[0]) for level, text in lines.lines] == [
        ("DEBUG", "Get hostname metadata failed"),
        ("ERROR", "Get instance id metadata failed"),
    ]
