"""Keeps the benchmark harness (bench/) working: a tiny end-to-end run, no timing assertions."""

from __future__ import annotations

import json
import time
import urllib.request

from bench import report
from bench.endpoint_client import EndpointProcess
from bench.run import parse_args, run
from bench.segments import DatagramFactory

ROW_KEYS = {
    "daemon",
    "target_rate",
    "achieved_rate",
    "sent",
    "delivered",
    "loss_pct",
    "cpu_pct",
    "cpu_s_per_100k",
    "rss_idle_mb",
    "rss_steady_mb",
    "rss_peak_mb",
    "latency_p50_ms",
    "latency_p99_ms",
}


def test_endpoint_counts_documents_by_sequence(tmp_path):
    factory = DatagramFactory(phase=7, sender=0, seed=1)
    docs = [factory.build(seq, time.monotonic_ns()).split(b"\n", 1)[1].decode() for seq in range(5)]
    body = json.dumps({"TraceSegmentDocuments": [*docs, docs[0]]}).encode()
    with EndpointProcess(tmp_path / "endpoint.log") as endpoint:
        request = urllib.request.Request(
            f"http://127.0.0.1:{endpoint.port}/TraceSegments", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read()) == {"UnprocessedTraceSegments": []}
        stats = endpoint.phase_stats(7)
    assert stats["delivered"] == 5
    assert stats["duplicates"] == 1
    assert stats["latency_ms"]["p50"] is not None


def test_runner_end_to_end_against_xray_trio(tmp_path):
    opts = parse_args(
        [
            "--rates=200",
            "--duration=2",
            "--no-ramp",
            "--settle=0.5",
            "--warmup=0.5",
            "--drain-quiet=2",
            "--ready-timeout=30",
            f"--out={tmp_path}",
        ]
    )
    result = run(opts)

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(result["runs"]))
    assert {"nproc", "cpu_model", "python"} <= saved["machine"].keys()
    (row,) = saved["runs"]
    assert "error" not in row, row.get("error")
    assert row["daemon"] == "xray-trio"
    assert row.keys() >= ROW_KEYS
    assert row["sent"] > 0
    assert row["delivered"] > 0
    markdown = (tmp_path / "results.md").read_text()
    assert "| daemon |" in markdown
    assert markdown == report.render(saved)
