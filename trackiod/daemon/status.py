"""What ``trackiod status`` shows: the writer's figures, then each service's own entries."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from trackio_shim.settings import TrackiodSettings
from trackiod import __version__
from trackiod.daemon.integrity import Recovery
from trackiod.daemon.loop import WriterLoop
from trackiod.daemon.services import Services
from trackiod.ingest.spool import spool_files


def daemon_status(
    settings: TrackiodSettings, started: float, recovery: Recovery | None, loop: WriterLoop, services: Services
) -> dict[str, Any]:
    """The status document (its fields are listed in docs/operations.md)."""
    ingest = loop.ingest
    counters = ingest.counters
    latencies = sorted(counters.commit_ms[-1000:])
    db = settings.db_path
    size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    active = ingest.store.active_runs()
    return {
        "pid": os.getpid(),
        "version": __version__,
        "uptime_s": round(time.time() - started, 1),
        "endpoint": settings.endpoint,
        "home": str(settings.home),
        "database": str(db),
        "database_bytes": size,
        "active_runs": [f"{r['run_key']} ({r['name']})" for r in active],
        "frames_per_s": round(loop.frames_per_s, 1),
        "points_per_s": round(loop.points_per_s, 1),
        "frames_total": counters.frames,
        "points_total": counters.points,
        "commits": counters.commits,
        "commit_ms_p50": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "commit_ms_p99": round(latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        "duplicates_dropped": counters.duplicates,
        "malformed_frames": counters.malformed,
        "internal_errors": counters.internal_errors,
        "spooled_frames_ingested": ingest.spool.frames,
        "spool_files_pending": len(spool_files(settings.spool_dir)),
        "spool_files_set_aside": ingest.spool.bad_files,
        "frames_lost": counters.frames_lost,
        "sessions_in_memory": len(ingest.accepted),
        "sessions_pruned": counters.sessions_pruned,
        "spool_files_queued": ingest.spool.pending_files(),
        "last_error": counters.last_error,
        "writes": ingest.stall.status(),
        "database_recovered": recovery.as_dict() if recovery else None,
        **services.status(),
    }
