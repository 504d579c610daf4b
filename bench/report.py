"""Markdown rendering of benchmark results (the JSON file holds every field)."""

from __future__ import annotations

import statistics
from typing import Any

Row = dict[str, Any]

# (header, key, format) for the per-rate tables.
_COLUMNS: list[tuple[str, str, str]] = [
    ("daemon", "daemon", "{}"),
    ("rep", "repeat", "{}"),
    ("target/s", "target_rate", "{:,.0f}"),
    ("sent/s", "achieved_rate", "{:,.0f}"),
    ("delivered", "delivered", "{:,}"),
    ("loss %", "loss_pct", "{:.2f}"),
    ("CPU % 1 core", "cpu_pct", "{:.1f}"),
    ("CPU s/100k", "cpu_s_per_100k", "{:.2f}"),
    ("RSS idle MB", "rss_idle_mb", "{:.1f}"),
    ("RSS steady MB", "rss_steady_mb", "{:.1f}"),
    ("RSS peak MB", "rss_peak_mb", "{:.1f}"),
    ("p50 ms", "latency_p50_ms", "{:.0f}"),
    ("p99 ms", "latency_p99_ms", "{:.0f}"),
    ("docs/req", "docs_per_request", "{:.1f}"),
    ("kernel UDP drops", "kernel_udp_RcvbufErrors", "{:,}"),
    ("endpoint CPU %", "endpoint_cpu_pct", "{:.1f}"),
    ("sender CPU %", "sender_cpu_pct", "{:.1f}"),
]


def _cell(fmt: str, value: object) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(rows: list[Row], columns: list[tuple[str, str, str]] | None = None) -> str:
    cols = columns or _COLUMNS
    out = ["| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [_cell(fmt, row.get(key)) for _, key, fmt in cols]
        notes = row.get("notes")
        if notes:
            cells[0] += " (" + "; ".join(notes) + ")"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def medians(rows: list[Row]) -> list[Row]:
    """One row per (daemon, target rate) with the median of each numeric column."""
    groups: dict[tuple[str, float], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["daemon"], row["target_rate"]), []).append(row)
    merged: list[Row] = []
    for (daemon, rate), group in groups.items():
        med: Row = {"daemon": daemon, "target_rate": rate, "repeat": f"med of {len(group)}"}
        for _, key, _ in _COLUMNS:
            values = [r[key] for r in group if isinstance(r.get(key), int | float)]
            if key not in med and values:
                med[key] = statistics.median(values)
        merged.append(med)
    return merged


def ramp_table(ramps: dict[str, Any]) -> str:
    lines = [
        "| daemon | highest rate with loss <= limit | steps (rate/s: loss %) |",
        "|---|---|---|",
    ]
    for daemon, ramp in ramps.items():
        steps = ", ".join(
            f"{s['target_rate']:,.0f}: {_cell('{:.2f}', s['loss_pct'])}"
            + (" (sender-bound)" if s.get("sender_bound") else "")
            for s in ramp["steps"]
        )
        best = ramp["best_rate"]
        limit = "" if not ramp.get("limited_by") else f" ({ramp['limited_by']})"
        lines.append(f"| {daemon} | {_cell('{:,.0f}', best)}{limit} | {steps} |")
    return "\n".join(lines)


def machine_block(machine: dict[str, Any], options: dict[str, Any]) -> str:
    lines = [
        f"- machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), "
        f"{machine['cpu_model']}, {machine['mem_total_mb']} MB RAM, kernel {machine['kernel']}",
        f"- python {machine['python']} ({machine['python_impl']}); load average at start "
        + ", ".join(f"{x:.2f}" for x in machine["loadavg_at_start"]),
        "- sender(s), fake endpoint and daemon share these CPUs (loopback only)",
        f"- duration {options['duration']} s per rate, warm-up excluded from CPU/RSS: "
        f"{options['warmup']} s, repeats {options['repeats']}, "
        f"error injection {options['error_pct']}% ({options['error_status']})",
    ]
    for label, template in options["daemons"].items():
        lines.append(f"- `{label}`: `{template}`")
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    opts = result["options"]
    parts = ["# xray-trio benchmark", "", machine_block(result["machine"], opts), ""]
    rows = [r for r in result["runs"] if r["scenario"] == "rate"]
    if rows:
        rows.sort(key=lambda r: (r["target_rate"], r["daemon"], r["repeat"]))
        parts += ["## Fixed rates", "", table(rows), ""]
        if opts["repeats"] > 1:
            parts += ["### Medians over repeats", "", table(medians(rows)), ""]
    slow = [r for r in result["runs"] if r["scenario"] == "slow"]
    if slow:
        parts += [f"## Slow endpoint ({opts['slow_delay_ms']:.0f} ms per response)", ""]
        parts += [table(slow), ""]
    if result.get("ramps"):
        limit = f"loss limit {opts['ramp_loss_pct']}%"
        if opts.get("ramp_max_p99_ms") is not None:
            limit += f", p99 <= {opts['ramp_max_p99_ms']:.0f} ms"
        parts += [f"## Ramp ({limit})", "", ramp_table(result["ramps"])]
        parts.append("")
    return "\n".join(parts)
