"""Paced UDP sender: ``python -m bench.loadgen --port P --rate R --duration S [...]``.

Sends ``rate * duration`` datagrams, spread evenly: every tick it sends however many datagrams
are due by the schedule, so a late wake-up is caught up in the next batch instead of lowering
the rate. Prints one JSON line with what was actually achieved, which the runner checks against
the target (a sender that cannot keep up is reported, never silently counted as daemon loss).

Times are ``CLOCK_MONOTONIC``, which on Linux is system-wide, so the endpoint process can
subtract the embedded send time from its own arrival time.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import time
from dataclasses import asdict, dataclass

from bench.segments import DatagramFactory


@dataclass
class SendReport:
    sender: int
    target_rate: float
    planned: int
    sent: int
    errors: int
    elapsed_s: float
    achieved_rate: float
    max_lag_ms: float
    cpu_s: float
    first_error: str | None


def send_paced(
    host: str,
    port: int,
    rate: float,
    duration: float,
    *,
    phase: int = 0,
    sender: int = 0,
    start_at: float | None = None,
    tick_s: float = 0.002,
) -> SendReport:
    planned = round(rate * duration)
    factory = DatagramFactory(phase, sender, seed=phase * 1000 + sender)
    # A connected socket lets send() skip the address lookup and surfaces ICMP
    # port-unreachable (daemon gone) as ECONNREFUSED on later sends.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    send = sock.send
    now_ns = time.monotonic_ns
    cpu0 = _cpu_seconds()

    if start_at is not None:
        time.sleep(max(0.0, start_at - time.monotonic()))
    t0 = time.monotonic()
    # Hard stop so a starved sender can never run on indefinitely.
    deadline = t0 + duration * 2 + 5
    sent = errors = seq = 0
    max_lag = 0.0
    first_error: str | None = None
    tick = 0
    while seq < planned:
        now = time.monotonic()
        if now > deadline:
            break
        due = min(planned, int((now - t0) * rate) + 1)
        if due > seq:
            max_lag = max(max_lag, now - (t0 + seq / rate))
        while seq < due:
            try:
                send(factory.build(seq, now_ns()))
                sent += 1
            except OSError as exc:  # ENOBUFS / ECONNREFUSED: count, keep the schedule
                errors += 1
                if first_error is None:
                    first_error = repr(exc)
            seq += 1
        tick += 1
        pause = t0 + tick * tick_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - t0
    sock.close()
    # The last datagram is due at (planned - 1) / rate; one interval more is the nominal span.
    span = max(elapsed, 1.0 / rate if rate else 0.0)
    return SendReport(
        sender=sender,
        target_rate=rate,
        planned=planned,
        sent=sent,
        errors=errors,
        elapsed_s=round(elapsed, 4),
        achieved_rate=round(sent / span, 1) if span else 0.0,
        max_lag_ms=round(max_lag * 1000, 2),
        cpu_s=round(_cpu_seconds() - cpu0, 3),
        first_error=first_error,
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="datagrams per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--phase", type=int, default=0, help="run id embedded in the marker")
    parser.add_argument("--sender", type=int, default=0, help="sender index in the marker")
    parser.add_argument("--start-at", type=float, help="CLOCK_MONOTONIC time to start at")
    parser.add_argument("--tick-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    report = send_paced(
        args.host,
        args.port,
        args.rate,
        args.duration,
        phase=args.phase,
        sender=args.sender,
        start_at=args.start_at,
        tick_s=args.tick_ms / 1000,
    )
    json.dump(asdict(report), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
