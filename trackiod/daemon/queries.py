"""The daemon's answers to queries: ``trackiod status``, stop, flush, sync, and what finish() prints.

Read-only views of the running :class:`~trackiod.daemon.process.Daemon` (apart from stop and the commits a query asks
for), kept apart from its socket loop.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackiod import __version__
from trackiod.ingest.spool import spool_files

if TYPE_CHECKING:
    from trackiod.daemon.process import Daemon
    from trackiod.sampling.sampler import Sampler


def answer_query(daemon: Daemon, sid: bytes, what: Any, args: dict[str, Any]) -> tuple[bool, Any]:
    """The answer ``(ok, body)`` to a QUERY ``what`` from session ``sid`` (status, stop, flush, sync, ...)."""
    ok: bool = True
    body: Any = None
    if what == "status":
        body = daemon_status(daemon)
    elif what == "stop":
        daemon.request_shutdown("trackiod stop")
    elif what == "summary":
        daemon.ingest.commit()
        body = daemon.ingest.runs.summary_view(sid, args.get("handle"))
        ok = body is not None
    elif what == "flush":
        ok = daemon.ingest.commit()
    elif what == "sync":  # trackiod sync --now: a pass now, paused repositories included
        daemon.ingest.commit()
        body = {"ticket": daemon.sync.request(0.0, unpause=True)}
    elif what == "sync_status":
        body = daemon.sync.status()
    elif what == "run_info":
        daemon.ingest.commit()
        body = _run_info(daemon, sid, args.get("handle"))
        ok = body is not None
    else:
        ok, body = False, f"unknown query {what!r}"
    return ok, body


def _run_info(daemon: Daemon, sid: bytes, handle: Any) -> dict[str, Any] | None:
    """What finish() prints: the run's stored points and state."""
    run_id = daemon.ingest.runs.handles.get((sid, handle))
    row = daemon.store.run(run_id) if run_id is not None else None
    if row is None:
        return None
    points = daemon.store._scalar("SELECT COALESCE(SUM(points), 0) FROM run_keys WHERE run_id=?", run_id)
    return {"points": points, "state": row["state"], "last_step": row["last_step"]}


def daemon_status(daemon: Daemon) -> dict[str, Any]:
    """What ``trackiod status`` shows."""
    counters = daemon.ingest.counters
    latencies = sorted(counters.commit_ms[-1000:])
    db = daemon.settings.db_path
    size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    active = daemon.store.active_runs()
    return {
        "pid": os.getpid(),
        "version": __version__,
        "uptime_s": round(time.time() - daemon.started, 1),
        "endpoint": daemon.settings.endpoint,
        "home": str(daemon.settings.home),
        "database": str(db),
        "database_bytes": size,
        "active_runs": [f"{r['run_key']} ({r['name']})" for r in active],
        "frames_per_s": round(daemon.frames_per_s, 1),
        "points_per_s": round(daemon.points_per_s, 1),
        "frames_total": counters.frames,
        "points_total": counters.points,
        "commits": counters.commits,
        "commit_ms_p50": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "commit_ms_p99": round(latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        "duplicates_dropped": counters.duplicates,
        "malformed_frames": counters.malformed,
        "internal_errors": counters.internal_errors,
        "spooled_frames_ingested": daemon.spool.frames,
        "spool_files_pending": len(spool_files(daemon.settings.spool_dir)),
        "last_error": counters.last_error,
        "writes": daemon.ingest.stall.status(),
        "database_recovered": daemon.recovery.as_dict() if daemon.recovery else None,
        "sampling": _sampling_status(daemon.sampler),
        "sync": daemon.sync.status(),
        "dashboard": daemon.dashboard_url,
        **daemon.features.status(),
        "mirrors": daemon.mirrors.status(),
        "forward": None
        if daemon.forwarder is None
        else {
            "to": daemon.forwarder.target,
            "forwarded": daemon.forwarder.forwarded,
            "acked": daemon.forwarder.acked,
            "backlog": daemon.forwarder.backlog(),
        },
        "listen": daemon.settings.listen or None,
    }


def _sampling_status(sampler: Sampler | None) -> dict[str, Any]:
    if sampler is None:
        return {"interval_s": 0, "nvml": "off (sampling disabled)", "gpus": [], "samples": 0}
    per_sample = sampler.cpu_s_total / sampler.samples if sampler.samples else None
    return {
        "interval_s": sampler.interval_s,
        "nvml": sampler.nvml_status,
        "gpus": [f"{g.index}: {g.name} ({g.uuid})" for g in sampler.gpus],
        "samples": sampler.samples,
        "cpu_ms_per_sample": None if per_sample is None else round(per_sample * 1000, 3),
        "core_percent": None if per_sample is None else round(100 * per_sample / sampler.interval_s, 4),
    }
