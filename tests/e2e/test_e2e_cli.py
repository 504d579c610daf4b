"""Start-up paths a user meets first: the stdout sink without AWS, and fatal start-up errors."""

from __future__ import annotations

import json
import signal
import socket

from e2e_support import (
    READY_LINE,
    REGION,
    SDK_HEADER,
    Harness,
    base_env,
    body_of,
    data_file,
)


def canonical(document: object) -> str:
    return json.dumps(document, sort_keys=True)


def test_stdout_sink_needs_no_aws_and_prints_one_json_line_per_document(
    harness: Harness,
) -> None:
    env = base_env()  # no credentials, no region, no endpoint, no config file
    env["HOME"] = str(harness.tmp_path)  # and no ~/.aws to fall back on
    assert not [name for name in env if name.startswith("AWS_")]
    daemon = harness.spawn(
        [
            "-o",
            "--sink",
            "stdout",
            "-b",
            f"127.0.0.1:{harness.udp_port}",
            "-t",
            f"127.0.0.1:{harness.tcp_port}",
            "-l",
            "debug",
        ],
        env=env,
    )
    daemon.wait_for_line(READY_LINE)
    unicode_doc = {"name": "ünïcødé-名前", "id": "0123456789abcdef", "start_time": 1.5}
    datagrams = [
        data_file("py-simple-01.bin"),
        data_file("node-rich-01.bin"),
        SDK_HEADER + json.dumps(unicode_doc, ensure_ascii=False).encode(),
    ]
    harness.send(*datagrams)

    daemon.wait_until(
        "three documents on stdout",
        lambda: len(daemon.raw_lines("stdout")) >= len(datagrams),
        timeout_s=10,
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0

    # stdout holds the documents and nothing else: one JSON value per line (a log line there
    # would fail json.loads).
    printed = [json.loads(line) for line in daemon.raw_lines("stdout")]
    assert sorted(canonical(doc) for doc in printed) == sorted(
        canonical(json.loads(body_of(d))) for d in datagrams
    )
    assert daemon.log_lines("Info", stream="stderr"), "logs go to stderr in this mode"
    assert harness.fake.requests == [], "nothing may be sent to AWS"


def test_too_little_buffer_memory_exits_1_with_go_message(harness: Harness) -> None:
    config = harness.write_config()
    daemon = harness.spawn(["-o", "-n", REGION, "-c", str(config), "-m", "2"])

    assert daemon.wait_exit() == 1
    assert (
        "Not enough Buffers Memory Allocated. Min Buffers Memory required: 3 MB."
        in daemon.log_lines("Error")
    ), daemon.output()


def test_udp_address_in_use_exits_1_with_go_message(harness: Harness) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        config = harness.write_config(udp_address=f"127.0.0.1:{port}")
        daemon = harness.spawn(["-o", "-n", REGION, "-c", str(config)])

        assert daemon.wait_exit() == 1
    assert f"listen udp 127.0.0.1:{port}: bind: address already in use" in daemon.log_lines(
        "Error"
    ), daemon.output()
