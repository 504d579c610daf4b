"""Per-process CPU and memory from /proc (Linux only), plus a description of the machine."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    t: float  # CLOCK_MONOTONIC seconds
    cpu_s: float  # utime + stime of all threads
    rss_kb: int
    hwm_kb: int  # peak RSS since start


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    # The command name may contain spaces or ')', so split after its last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def sample(pid: int, now: float) -> Sample:
    rss, hwm = memory_kb(pid)
    return Sample(now, cpu_seconds(pid), rss, hwm)


def udp_port_bound(port: int) -> bool:
    """True once some process has a UDP socket bound to the port (IPv4 or IPv6)."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh)
                if any(line.split()[1].endswith(suffix) for line in fh):
                    return True
        except OSError:
            continue
    return False


def udp_counters() -> dict[str, int]:
    """Host-wide UDP counters; RcvbufErrors growing means the kernel dropped datagrams because
    the daemon did not read its socket fast enough (loss before the daemon ever saw them)."""
    try:
        with open("/proc/net/snmp") as fh:
            rows = [line.split() for line in fh if line.startswith("Udp:")]
        return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=True)}
    except (OSError, IndexError, ValueError):
        return {}


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as fh:
            mem_kb = int(fh.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total_mb": mem_kb // 1024,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "loadavg_at_start": os.getloadavg(),
    }
