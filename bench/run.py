"""Benchmark runner: ``python -m bench.run [options]`` (see docs/performance.md).

For every (repeat, rate, daemon) it starts a fresh daemon against one shared fake endpoint,
waits until it is idle, drives the load generator(s), lets the daemon drain, and records
send rate, loss, CPU, RSS and latency. With several daemons the order is rotated at every
rate so drifting background load does not favour one of them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat, report
from bench.daemons import (
    DEFAULT_TRIO_CMD,
    REPO,
    DaemonError,
    DaemonSpec,
    RunningDaemon,
    die_with_parent,
)
from bench.endpoint_client import EndpointProcess

Row = dict[str, Any]


@dataclass
class Options:
    rates: list[float]
    duration: float
    repeats: int
    daemons: list[DaemonSpec]
    out: Path
    warmup: float = 3.0
    settle: float = 2.0
    ready_timeout: float = 60.0
    drain_quiet: float = 2.5
    drain_timeout: float = 30.0
    sample_interval: float = 0.25
    per_sender_rate: float = 10000.0
    error_pct: float = 0.0
    error_status: int = 500
    slow: bool = False
    slow_rate: float = 4000.0
    slow_delay_ms: float = 200.0
    ramp: bool = True
    ramp_start: float = 2000.0
    ramp_factor: float = 2.0
    ramp_max: float = 64000.0
    ramp_refine: int = 2
    ramp_duration: float = 10.0
    ramp_loss_pct: float = 1.0
    ramp_max_p99_ms: float | None = None
    phase_counter: list[int] = field(default_factory=lambda: [0])

    def next_phase(self) -> int:
        self.phase_counter[0] += 1
        return self.phase_counter[0]

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("daemons", "phase_counter")}
        d["out"] = str(self.out)
        d["daemons"] = {s.label: s.template for s in self.daemons}
        return d


def _start_senders(
    port: int, rate: float, duration: float, phase: int, per_sender: float, start_at: float
) -> list[subprocess.Popen[bytes]]:
    n = max(1, math.ceil(rate / per_sender))
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                f"--port={port}",
                f"--rate={rate / n}",
                f"--duration={duration}",
                f"--phase={phase}",
                f"--sender={i}",
                f"--start-at={start_at}",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            preexec_fn=die_with_parent,  # safe: the runner is single-threaded
        )
        for i in range(n)
    ]


def measure(
    opts: Options,
    endpoint: EndpointProcess,
    spec: DaemonSpec,
    rate: float,
    duration: float,
    *,
    scenario: str,
    repeat: int,
    delay_ms: float = 0.0,
) -> Row:
    phase = opts.next_phase()
    endpoint.configure(delay_ms=delay_ms, error_pct=opts.error_pct, error_status=opts.error_status)
    tag = f"{scenario}-{spec.label}-{rate:.0f}-r{repeat}-p{phase}"
    workdir = opts.out / "work" / tag
    log = opts.out / "logs" / f"{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    row: Row = {
        "daemon": spec.label,
        "scenario": scenario,
        "repeat": repeat,
        "phase": phase,
        "target_rate": rate,
        "duration_s": duration,
        "delay_ms": delay_ms,
        "error_pct": opts.error_pct,
        "log": str(log),
        "notes": [],
    }
    print(f"[bench] {tag}: starting", file=sys.stderr, flush=True)
    with RunningDaemon(spec, endpoint.port, workdir, log) as daemon:
        row["startup_s"] = round(daemon.wait_ready(opts.ready_timeout), 3)
        time.sleep(opts.settle)
        idle = procstat.sample(daemon.pid, time.monotonic())
        udp_before = procstat.udp_counters()
        start_at = time.monotonic() + 0.5  # lets every sender process finish importing
        t_end = start_at + duration
        senders = (
            _start_senders(daemon.udp_port, rate, duration, phase, opts.per_sender_rate, start_at)
            if rate > 0
            else []
        )
        samples: list[procstat.Sample] = []
        ep_samples: list[procstat.Sample] = []
        # Bounded: senders stop on their own by t_end (hard stop at 2x + 5 s in loadgen).
        hard_stop = t_end + duration + 15
        try:
            while time.monotonic() < hard_stop and daemon.alive():
                now = time.monotonic()
                samples.append(procstat.sample(daemon.pid, now))
                ep_samples.append(procstat.sample(endpoint.pid, now))
                if now >= t_end and all(p.poll() is not None for p in senders):
                    break
                time.sleep(opts.sample_interval)
        finally:
            for p in senders:
                if p.poll() is None:
                    p.kill()
        reports = [json.loads(p.communicate()[0] or b"{}") for p in senders]
        row.update(_send_summary(reports, rate))
        delivered_stats = _drain(opts, endpoint, phase, row.get("sent", 0), daemon)
        udp_after = procstat.udp_counters()
        for key in ("RcvbufErrors", "InErrors"):
            if key in udp_before and key in udp_after:
                row[f"kernel_udp_{key}"] = udp_after[key] - udp_before[key]
        row["daemon_alive_after"] = daemon.alive()
        if daemon.alive():
            final = procstat.sample(daemon.pid, time.monotonic())
            row["rss_peak_mb"] = round(final.hwm_kb / 1024, 1)
            row["cpu_s_total"] = round(final.cpu_s - idle.cpu_s, 3)
        else:
            row["notes"].append(f"daemon exited rc={daemon.proc.returncode}")
        row["daemon_exit_code"] = daemon.stop()
    endpoint.forget(phase)

    row.update(_resource_summary(samples, ep_samples, idle, start_at, t_end, opts, rate))
    row.update(delivered_stats)
    sent = row.get("sent", 0)
    delivered = row.get("delivered", 0)
    row["loss_pct"] = round(100 * (sent - delivered) / sent, 3) if sent else None
    if sent and row.get("cpu_s_total") is not None:
        row["cpu_s_per_100k_total"] = round(row["cpu_s_total"] / sent * 1e5, 3)
    if rate and row.get("achieved_rate", 0) < 0.97 * rate:
        row["sender_bound"] = True
        row["notes"].append("sender below 97% of target")
    print(
        f"[bench] {tag}: sent/s={row.get('achieved_rate')} loss%={row.get('loss_pct')} "
        f"cpu%={row.get('cpu_pct')} p99ms={row.get('latency_p99_ms')}",
        file=sys.stderr,
        flush=True,
    )
    return row


def _send_summary(reports: list[dict[str, Any]], rate: float) -> Row:
    if not reports:
        return {"senders": 0, "sent": 0, "achieved_rate": 0.0}
    sent = sum(r.get("sent", 0) for r in reports)
    elapsed = max((r.get("elapsed_s", 0.0) for r in reports), default=0.0)
    span = max(elapsed, 1 / rate) if rate else elapsed
    return {
        "senders": len(reports),
        "planned": sum(r.get("planned", 0) for r in reports),
        "sent": sent,
        "send_errors": sum(r.get("errors", 0) for r in reports),
        "achieved_rate": round(sent / span, 1) if span else 0.0,
        "sender_max_lag_ms": max(r.get("max_lag_ms", 0.0) for r in reports),
        "sender_cpu_pct": round(100 * sum(r.get("cpu_s", 0.0) for r in reports) / span, 1)
        if span
        else None,
        "send_first_error": next((r["first_error"] for r in reports if r.get("first_error")), None),
    }


def _drain(
    opts: Options, endpoint: EndpointProcess, phase: int, sent: int, daemon: RunningDaemon
) -> Row:
    """Waits until everything sent has arrived or arrivals have stopped for drain_quiet s."""
    t0 = time.monotonic()
    last_change = t0
    stats = endpoint.phase_stats(phase)
    while time.monotonic() - t0 < opts.drain_timeout and daemon.alive():
        if stats["delivered"] >= sent or time.monotonic() - last_change >= opts.drain_quiet:
            break
        time.sleep(0.2)
        new = endpoint.phase_stats(phase)
        if new["delivered"] != stats["delivered"] or new["failed_docs"] != stats["failed_docs"]:
            last_change = time.monotonic()
        stats = new
    lat = stats["latency_ms"]
    requests = stats["requests"]
    return {
        "delivered": stats["delivered"],
        "duplicates": stats["duplicates"],
        "failed_docs": stats["failed_docs"],
        "requests": requests,
        "docs_per_request": round(stats["delivered"] / requests, 2) if requests else None,
        "latency_p50_ms": lat["p50"],
        "latency_p90_ms": lat["p90"],
        "latency_p99_ms": lat["p99"],
        "latency_max_ms": lat["max"],
        "drain_s": round(time.monotonic() - t0, 2),
    }


def _resource_summary(
    samples: list[procstat.Sample],
    ep_samples: list[procstat.Sample],
    idle: procstat.Sample,
    start_at: float,
    t_end: float,
    opts: Options,
    rate: float,
) -> Row:
    warm = min(opts.warmup, (t_end - start_at) * 0.3)
    window = [s for s in samples if start_at + warm <= s.t <= t_end]
    ep_window = [s for s in ep_samples if start_at + warm <= s.t <= t_end]
    out: Row = {"rss_idle_mb": round(idle.rss_kb / 1024, 1), "steady_window_s": None}
    if len(window) >= 2:
        span = window[-1].t - window[0].t
        cpu = window[-1].cpu_s - window[0].cpu_s
        out["steady_window_s"] = round(span, 2)
        out["cpu_pct"] = round(100 * cpu / span, 1)
        out["cpu_s_per_100k"] = round(cpu / (rate * span) * 1e5, 3) if rate else None
        out["rss_steady_mb"] = round(statistics.median(s.rss_kb for s in window) / 1024, 1)
    if samples:
        out.setdefault("rss_peak_mb", round(max(s.hwm_kb for s in samples) / 1024, 1))
    if len(ep_window) >= 2:
        span = ep_window[-1].t - ep_window[0].t
        out["endpoint_cpu_pct"] = round(100 * (ep_window[-1].cpu_s - ep_window[0].cpu_s) / span, 1)
    return out


def ramp(opts: Options, endpoint: EndpointProcess, spec: DaemonSpec) -> dict[str, Any]:
    """Geometric climb until loss exceeds the limit, then bisect between last good and bad."""
    steps: list[Row] = []

    def ok(row: Row) -> bool:
        loss = row.get("loss_pct")
        p99 = row.get("latency_p99_ms")
        # Loss alone hides a growing backlog that the drain phase later flushes; the optional
        # latency limit catches a daemon that keeps up only by queueing.
        slow = opts.ramp_max_p99_ms is not None and (p99 is None or p99 > opts.ramp_max_p99_ms)
        return (
            loss is not None
            and loss <= opts.ramp_loss_pct
            and not row.get("sender_bound")
            and not slow
        )

    def step(rate: float) -> Row:
        row = _safe(opts, endpoint, spec, rate, "ramp", len(steps), duration=opts.ramp_duration)
        steps.append(row)
        return row

    good: float | None = None
    bad: float | None = None
    limited_by = None
    rate = opts.ramp_start
    while rate <= opts.ramp_max:
        row = step(rate)
        if ok(row):
            good = rate
            rate *= opts.ramp_factor
        else:
            bad = rate
            if row.get("error"):
                limited_by = "daemon failed to start"
            elif row.get("sender_bound"):
                limited_by = "sender could not reach the rate"
            break
    else:
        limited_by = f"ramp max {opts.ramp_max:,.0f} reached"
    if bad is not None and limited_by is None:
        lo = good if good is not None else 0.0
        for _ in range(opts.ramp_refine):
            mid = round((lo + bad) / 2, -2)
            if mid <= lo or mid >= bad:
                break
            if ok(step(mid)):
                lo = good = mid
            else:
                bad = mid
    return {"best_rate": good, "first_bad_rate": bad, "limited_by": limited_by, "steps": steps}


def run(opts: Options) -> dict[str, Any]:
    opts.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "machine": procstat.machine(),
        "options": opts.summary(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": [],
        "ramps": {},
    }
    with EndpointProcess(opts.out / "logs" / "endpoint.log") as endpoint:
        n = len(opts.daemons)
        for rep in range(opts.repeats):
            for i, rate in enumerate(opts.rates):
                shift = (rep + i) % n
                for spec in opts.daemons[shift:] + opts.daemons[:shift]:
                    _append(result, opts, _safe(opts, endpoint, spec, rate, "rate", rep))
        if opts.slow:
            for rep in range(opts.repeats):
                for spec in opts.daemons:
                    row = _safe(
                        opts, endpoint, spec, opts.slow_rate, "slow", rep, opts.slow_delay_ms
                    )
                    _append(result, opts, row)
        if opts.ramp:
            for spec in opts.daemons:
                result["ramps"][spec.label] = ramp(opts, endpoint, spec)
                _write(result, opts)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _write(result, opts)
    return result


def _safe(
    opts: Options,
    endpoint: EndpointProcess,
    spec: DaemonSpec,
    rate: float,
    scenario: str,
    rep: int,
    delay_ms: float = 0.0,
    duration: float | None = None,
) -> Row:
    try:
        return measure(
            opts,
            endpoint,
            spec,
            rate,
            duration or opts.duration,
            scenario=scenario,
            repeat=rep,
            delay_ms=delay_ms,
        )
    except DaemonError as exc:
        # One daemon failing to start must not lose the other daemon's numbers.
        print(f"[bench] {spec.label} at {rate}/s failed: {exc}", file=sys.stderr)
        return {
            "daemon": spec.label,
            "scenario": scenario,
            "repeat": rep,
            "target_rate": rate,
            "error": str(exc),
            "loss_pct": None,
            "notes": ["daemon failed to start"],
        }


def _append(result: dict[str, Any], opts: Options, row: Row) -> None:
    result["runs"].append(row)
    _write(result, opts)  # after every run, so an interrupted benchmark keeps what it measured


def _write(result: dict[str, Any], opts: Options) -> None:
    (opts.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (opts.out / "results.md").write_text(report.render(result))


def _parse_rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--rates", type=_parse_rates, default=[0, 1000, 4000, 10000, 20000])
    p.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--daemon",
        nargs=2,
        action="append",
        metavar=("LABEL", "CMD"),
        default=[],
        help="daemon to measure (repeatable); CMD placeholders: {config} {port} {endpoint} "
        "{udp} {tcp} {python} {repo}",
    )
    p.add_argument(
        "--daemon-cmd", action="append", default=[], help="like --daemon, label from the program"
    )
    p.add_argument("--out", type=Path, help="output dir (default bench/results/<timestamp>)")
    p.add_argument("--warmup", type=float, default=3.0, help="s excluded from CPU/RSS")
    p.add_argument("--settle", type=float, default=2.0, help="idle s after startup")
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument("--drain-quiet", type=float, default=2.5)
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--per-sender-rate", type=float, default=10000.0)
    p.add_argument("--error-pct", type=float, default=0.0, help="%% of uploads answered with error")
    p.add_argument("--error-status", type=int, default=500, choices=(500, 429))
    p.add_argument("--always-fail", action="store_true", help="same as --error-pct 100")
    p.add_argument("--slow", action="store_true", help="add the slow-endpoint scenario")
    p.add_argument("--slow-rate", type=float, default=4000.0)
    p.add_argument("--slow-delay-ms", type=float, default=200.0)
    p.add_argument("--no-ramp", dest="ramp", action="store_false")
    p.add_argument("--ramp-start", type=float, default=2000.0)
    p.add_argument("--ramp-factor", type=float, default=2.0)
    p.add_argument("--ramp-max", type=float, default=64000.0)
    p.add_argument("--ramp-refine", type=int, default=2, help="bisection steps")
    p.add_argument("--ramp-duration", type=float, default=10.0)
    p.add_argument("--ramp-loss-pct", type=float, default=1.0)
    p.add_argument("--ramp-max-p99-ms", type=float, help="also require p99 latency <= this")
    a = p.parse_args(argv)
    specs = [DaemonSpec(label, cmd) for label, cmd in a.daemon]
    specs += [DaemonSpec(Path(cmd.split()[0]).name, cmd) for cmd in a.daemon_cmd]
    if not specs:
        specs = [DaemonSpec("xray-trio", DEFAULT_TRIO_CMD)]
    if len({s.label for s in specs}) != len(specs):
        p.error("daemon labels must be unique")
    if a.duration <= 0 or a.repeats < 1 or a.ramp_factor <= 1:
        p.error("need --duration > 0, --repeats >= 1, --ramp-factor > 1")
    out = (a.out or REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    return Options(
        rates=a.rates,
        duration=a.duration,
        repeats=a.repeats,
        daemons=specs,
        out=out,
        warmup=a.warmup,
        settle=a.settle,
        ready_timeout=a.ready_timeout,
        drain_quiet=a.drain_quiet,
        drain_timeout=a.drain_timeout,
        per_sender_rate=a.per_sender_rate,
        error_pct=100.0 if a.always_fail else a.error_pct,
        error_status=a.error_status,
        slow=a.slow,
        slow_rate=a.slow_rate,
        slow_delay_ms=a.slow_delay_ms,
        ramp=a.ramp,
        ramp_start=a.ramp_start,
        ramp_factor=a.ramp_factor,
        ramp_max=a.ramp_max,
        ramp_refine=a.ramp_refine,
        ramp_duration=a.ramp_duration,
        ramp_loss_pct=a.ramp_loss_pct,
        ramp_max_p99_ms=a.ramp_max_p99_ms,
    )


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    result = run(opts)
    print(report.render(result))
    print(f"[bench] results in {opts.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
