"""How the CLI writes things for people: tables, sizes, times, and the one-line summaries of status entries.

The daemon and the reads return plain values (numbers, timestamps, dicts); the wording a person reads lives
here, in one place, so every command prints a size, a time or a table the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def print_table(rows: Sequence[Sequence[Any]]) -> None:
    """Print rows (the first is the header) in columns padded to their widest cell."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


def human_bytes(n: float) -> str:
    """A size in B, KiB, MiB, GiB or TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def when(ts: float | None) -> str:
    """A timestamp as local date and time; empty for none."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def ago(stamp: float | None) -> str:
    """A past timestamp as local time and how long ago it was; "never" for none."""
    if not stamp:
        return "never"
    return f"{when(stamp)} ({time.time() - stamp:.0f} s ago)"


def duration(seconds: float) -> str:
    """A duration in seconds, minutes or hours, whichever reads best."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def writes_line(writes: dict[str, Any] | None) -> str:
    """``trackiod status``'s "writes" line (trackiod.ingest.stall's state)."""
    if not writes or writes.get("state") != "stalled":
        stalls = (writes or {}).get("stalls", 0)
        return "ok" + (f" ({stalls} stalls since start, all recovered)" if stalls else "")
    since = time.strftime("%H:%M:%S", time.localtime(writes["since"]))
    return (
        f"STALLED since {since}: {writes['cause']}; nothing is acknowledged, clients buffer; "
        f"{writes['failed_tries']} tries, next in {writes['next_try_s']:.0f} s (free space to resume)"
    )


def recovery_line(recovered: dict[str, Any]) -> str:
    """The line for ``trackiod status``'s ``database_recovered`` entry (trackiod.daemon.integrity)."""
    return (
        f"the database {recovered['database']} was damaged ({recovered['problem']}); it was moved to "
        f"{recovered['moved_to']} and a fresh database was started (docs/faults.md)"
    )


def sync_lines(sync: dict[str, Any]) -> list[tuple[str, str]]:
    """``trackiod status`` rows for sync: one per repository, paused ones saying what to do."""
    repos = sync.get("repos") or {}
    if sync.get("left_to_head"):
        return [("sync", f"left to the head: this node forwards to {sync['left_to_head']} (docs/sync.md, Who syncs)")]
    if not repos:
        return [("sync", f"nothing to sync (every {sync['interval_s']:.0f} s; see docs/sync.md)")]
    rows = []
    for repo, s in repos.items():
        text = f"{s['state']}, last synced {ago(s['last_success'])}"
        if s.get("message"):
            text += f": {s['message']}"
        rows.append((f"sync {repo}", text))
    return rows
