"""Pure text formatting for the dashboard's cells."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xray_trio.events import SegmentSeen


def rate(value: float) -> str:
    """A per-second rate in at most six characters: ``0.25``, ``12.5``, ``950``, ``12.3k``."""
    if value <= 0:
        return "0"
    if value < 10:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if value < 100:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    if value < 10_000:
        return f"{value:.0f}"
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.1f}M"


def count(value: int) -> str:
    """A counter with thousands separators."""
    return f"{value:,}"


def size(value: int) -> str:
    """Bytes as ``512 B``, ``1.5 KB``, ``64.0 MB``."""
    if value < 1024:
        return f"{value} B"
    if value < 1024 * 1024:
        return f"{value / 1024:.1f} KB"
    return f"{value / (1024 * 1024):.1f} MB"


def clock(epoch: float) -> str:
    """Local wall-clock time of day with milliseconds."""
    local = time.localtime(epoch)
    return time.strftime("%H:%M:%S", local) + f".{int(epoch % 1 * 1000):03d}"


def duration(seen: SegmentSeen) -> str:
    """End minus start, ``…`` while in progress, empty when unknown."""
    if seen.in_progress:
        return "…"
    if seen.start_time is None or seen.end_time is None:
        return ""
    ms = (seen.end_time - seen.start_time) * 1000
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def flags(seen: SegmentSeen) -> str:
    """``E``rror, ``F``ault, ``T``hrottle, as a fixed-width column."""
    return "".join(
        letter if on else "·"
        for letter, on in (("E", seen.error), ("F", seen.fault), ("T", seen.throttle))
    )


def uptime(seconds: float) -> str:
    """``1h02m03s`` style."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def head(data: bytes, limit: int = 48) -> str:
    """The first bytes of a datagram, printable ASCII kept, everything else escaped."""
    out = []
    for byte in data[:limit]:
        char = chr(byte)
        if char == "\\":
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        elif char == "\n":
            out.append("\\n")
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out) + ("…" if len(data) > limit else "")


def pretty_json(raw: str) -> tuple[str, bool]:
    """The document indented for reading, and whether it parsed as JSON at all."""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False), True
    except (ValueError, RecursionError):
        return raw, False


def bar(used: int, total: int, width: int) -> tuple[str, float]:
    """A block bar of ``width`` cells and the used fraction."""
    fraction = min(max(used / total, 0.0), 1.0) if total > 0 else 0.0
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled), fraction
