"""The real Python X-Ray SDK, centralized sampling on, talking to the daemon run in-process.

The SDK (in a child process, so its poller threads die with it) fetches sampling rules and
targets through the daemon's TCP proxy from a fake X-Ray endpoint, and sends its segments over
UDP. The fake must see every sampling call signed with the daemon's keys; the signature is
recomputed with botocore.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import sys
import time
from typing import TYPE_CHECKING

import pytest
import trio
from botocore.credentials import Credentials
from fake_xray import TRACE_SEGMENTS, FakeXRay, Reply
from test_proxy import check_sigv4

from xray_trio.config import Config, SocketConfig
from xray_trio.daemon import run_daemon

if TYPE_CHECKING:
    from pathlib import Path

REGION = "us-west-2"
DAEMON_KEYS = Credentials("AKIDDAEMON", "daemon-secret", "daemon-token")

RULES = {
    "SamplingRuleRecords": [
        {
            "SamplingRule": {
                "RuleName": "capture-all",
                "RuleARN": "arn:aws:xray:us-west-2:123456789012:sampling-rule/capture-all",
                "ResourceARN": "*",
                "Priority": 1,
                "FixedRate": 0.05,
                "ReservoirSize": 5,
                "ServiceName": "*",
                "ServiceType": "*",
                "Host": "*",
                "HTTPMethod": "*",
                "URLPath": "*",
                "Version": 1,
                "Attributes": {},
            },
            "CreatedAt": 1_600_000_000,
            "ModifiedAt": 1_600_000_000,
        }
    ]
}

# Runs in the child: one segment starts the pollers (rules are fetched at once); once the rule
# is loaded and matched, the target poller's own work step runs now rather than in 10 s.
SDK_PROGRAM = """
import json, sys, time
from aws_xray_sdk.core import AWSXRayRecorder

recorder = AWSXRayRecorder()
recorder.configure(
    sampling=True, context_missing="LOG_ERROR", daemon_address=sys.argv[1], service="sdk-app"
)
recorder.begin_segment("sdk-app")
recorder.end_segment()
sampler = recorder.sampler
deadline = time.time() + 20
while not sampler._cache.rules and time.time() < deadline:
    time.sleep(0.02)
[rule] = sampler._cache.rules
sampled = sampler.should_trace({"host": "h", "method": "GET", "path": "/", "service": "sdk-app"})
sampler._target_poller._do_work()
recorder.begin_segment("sdk-app")
recorder.end_segment()
print(json.dumps({"rule": rule.name, "rate": rule.rate, "quota": rule.reservoir.quota,
                  "sampled": bool(sampled)}))
"""


class Stopper:
    def __init__(self) -> None:
        self.event = trio.Event()

    async def __call__(self) -> str:
        await self.event.wait()
        return "terminated"


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_sdk_sampling_goes_through_the_proxy_signed_by_the_daemon(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DAEMON_KEYS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DAEMON_KEYS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", DAEMON_KEYS.token)
    program = tmp_path / "sdk_app.py"
    program.write_text(SDK_PROGRAM)
    logger = logging.getLogger("test.sampling_sdk")
    tcp_port = free_tcp_port()
    targets = {
        "SamplingTargetDocuments": [
            {
                "RuleName": "capture-all",
                "FixedRate": 0.42,
                "ReservoirQuota": 7,
                "ReservoirQuotaTTL": time.time() + 3600,
                "Interval": 10,
            }
        ],
        "LastRuleModification": 1_600_000_000,
        "UnprocessedStatistics": [],
    }
    with FakeXRay() as xray:
        xray.script("/GetSamplingRules", Reply(body=json.dumps(RULES).encode()))
        xray.script("/SamplingTargets", Reply(body=json.dumps(targets).encode()))
        config = Config(
            sinks=("xray",),
            region=REGION,
            endpoint=xray.url,
            local_mode=True,
            total_buffer_size_mb=16,
            socket=SocketConfig(udp_address="127.0.0.1:0", tcp_address=f"127.0.0.1:{tcp_port}"),
        )
        stop = Stopper()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                udp_host, udp_port = await nursery.start(
                    functools.partial(run_daemon, config, logger, shutdown_trigger=stop)
                )
                address = f"tcp:127.0.0.1:{tcp_port} udp:{udp_host}:{udp_port}"
                child = await trio.run_process(
                    [sys.executable, str(program), address],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
                assert child.returncode == 0, child.stderr.decode()
                stop.event.set()
            documents = await trio.to_thread.run_sync(xray.wait_for_documents, 2)

    result = json.loads(child.stdout)
    # The rule came from GetSamplingRules, its new rate and quota from SamplingTargets.
    assert result == {"rule": "capture-all", "rate": 0.42, "quota": 7, "sampled": True}
    [rules_call] = xray.requests_to("/GetSamplingRules")
    [targets_call] = xray.requests_to("/SamplingTargets")
    for call in (rules_call, targets_call):
        headers = {name.lower(): value for name, value in call.headers}
        url = xray.url.rstrip("/") + call.path
        assert check_sigv4("POST", url, headers, call.body, DAEMON_KEYS, REGION) == "AKIDDAEMON"
        assert headers["x-amz-security-token"] == "daemon-token"
        assert headers["user-agent"].startswith("Botocore/")  # the SDK's own, relayed
    statistics = json.loads(targets_call.body)["SamplingStatisticsDocuments"]
    assert [doc["RuleName"] for doc in statistics] == ["capture-all"]
    assert statistics[0]["RequestCount"] >= 1
    assert [json.loads(doc)["name"] for doc in documents] == ["sdk-app", "sdk-app"]
    assert xray.requests_to(TRACE_SEGMENTS)
