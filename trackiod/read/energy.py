"""Reading energy and system series back: per-run energy reports and node series.

Read-only, through :mod:`trackiod.read.connection`'s connections; used by ``trackiod energy``, ``trackiod card``
(which turns a report into model-card YAML), ``run.energy()``, ``Api`` and the dashboard's system panel. The
figures are the ones the daemon keeps live in ``run_gpus``.
"""

from __future__ import annotations

import time
from typing import Any

import apsw
import numpy as np

from trackiod.read.runs import list_runs
from trackiod.store.codec import decode_floats
from trackiod.store.schema import dict_rows


def run_energy(conn: apsw.Connection, run: dict[str, Any], grid_g_per_kwh: float | None = None) -> dict[str, Any]:
    """The energy report of one run: totals, per-GPU figures, emissions.

    ``grid_g_per_kwh`` overrides the grid intensity the daemon recorded for the run (gCO2eq/kWh).
    """
    gpus = dict_rows(
        conn,
        "SELECT g.idx AS index_, g.uuid, g.name, n.host, rg.via, rg.joules, rg.estimated_joules, rg.gpu_seconds, "
        "rg.first_ts, rg.last_ts FROM run_gpus rg JOIN gpus g ON g.id = rg.gpu_id JOIN nodes n ON n.id = g.node_id "
        "WHERE rg.run_id=? ORDER BY n.host, g.idx",
        (run["id"],),
    )
    meta = conn.execute("SELECT grid_g_per_kwh, location FROM run_energy WHERE run_id=?", (run["id"],)).fetchone()
    recorded_grid, location = (meta[0], meta[1]) if meta else (None, "")
    grid = grid_g_per_kwh if grid_g_per_kwh is not None else recorded_grid
    joules = sum(g["joules"] for g in gpus)
    estimated = sum(g["estimated_joules"] for g in gpus)
    seconds = sum(g["gpu_seconds"] for g in gpus)
    kwh = joules / 3.6e6
    end = run["ended_at"] or (time.time() if run["state"] == "running" else run["updated_at"])
    return {
        "project": run["project"],
        "id": run["run_key"],
        "name": run["name"],
        "state": run["state"],
        "duration_s": max(0.0, end - run["created_at"]),
        "gpus": [
            {
                "index": g["index_"],
                "uuid": g["uuid"],
                "name": g["name"],
                "host": g["host"],
                "seen_by": g["via"].split(","),
                "joules": g["joules"],
                "estimated_joules": g["estimated_joules"],
                "gpu_hours": g["gpu_seconds"] / 3600,
            }
            for g in gpus
        ],
        "recorded": bool(gpus),
        "gpu_joules": joules,
        "gpu_kwh": kwh,
        "gpu_hours": seconds / 3600,
        "estimated_fraction": estimated / joules if joules else 0.0,
        "grid_g_per_kwh": grid,
        "co2eq_kg": None if grid is None else kwh * grid / 1000,
        "location": location,
    }


def energy_reports(
    conn: apsw.Connection, project: str | None = None, grid_g_per_kwh: float | None = None
) -> list[dict[str, Any]]:
    """Energy reports of every run (newest first), optionally of one project."""
    return [run_energy(conn, run, grid_g_per_kwh) for run in list_runs(conn, project)]


def system_keys(conn: apsw.Connection, host: str | None = None) -> dict[str, list[str]]:
    """``{host: [series names]}`` of the node series stored."""
    sql = (
        "SELECT DISTINCT n.host, k.name FROM system_chunks c JOIN nodes n ON n.id = c.node_id "
        "JOIN keys k ON k.id = c.key_id"
    )
    rows = conn.execute(sql + (" WHERE n.host=?" if host else "") + " ORDER BY n.host, k.name", (host,) if host else ())
    out: dict[str, list[str]] = {}
    for node, name in rows:
        out.setdefault(node, []).append(name)
    return out


def system_series(
    conn: apsw.Connection, host: str, key: str, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One node series as (timestamps, values), time-ordered, limited to ``[start, end]`` when given."""
    rows: list[Any] = conn.execute(
        "SELECT c.times, c.vals FROM system_chunks c JOIN nodes n ON n.id = c.node_id JOIN keys k ON k.id = c.key_id "
        "WHERE n.host=? AND k.name=? AND c.ts_max >= ? AND c.ts_min <= ? ORDER BY c.ts_min",
        (host, key, -1e300 if start is None else start, 1e300 if end is None else end),
    ).fetchall()
    if not rows:
        return np.empty(0), np.empty(0)
    times = np.concatenate([decode_floats(r[0]) for r in rows])
    vals = np.concatenate([decode_floats(r[1]) for r in rows])
    order = np.argsort(times, kind="stable")
    times, vals = times[order], vals[order]
    keep = np.ones(times.size, bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times <= end
    return times[keep], vals[keep]
