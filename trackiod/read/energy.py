"""Reading energy and system series back: per-run energy reports, the model-card YAML, node series.

Read-only, through trackiod.read.series's connections; used by ``trackiod energy``, ``trackiod card``,
``run.energy()`` and ``Api``. The figures are the ones the daemon keeps live in ``run_gpus``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import apsw
import numpy as np

from trackio_shim.errors import RunNotFoundError, UsageError
from trackiod import __version__
from trackiod.read.series import _RUN_SELECT, _run_dict
from trackiod.store.schema import dict_rows

DEFAULT_TRAINING_TYPE = "pre-training"
TRAINING_TYPES = ("pre-training", "fine-tuning")


def find_run(conn: apsw.Connection, ref: str) -> dict[str, Any]:
    """A run by ``project/id`` or by a bare id that is unique across projects.

    Raises:
        RunNotFoundError: no run matches.
        UsageError: a bare id matches runs in several projects.
    """
    parts = ref.split("/")
    if len(parts) == 2 and all(parts):
        rows = dict_rows(conn, f"{_RUN_SELECT} WHERE p.name=? AND r.run_key=?", (parts[0], parts[1]))
    elif len(parts) == 1 and ref:
        rows = dict_rows(conn, f"{_RUN_SELECT} WHERE r.run_key=?", (ref,))
    else:
        raise UsageError(f"run {ref!r} must be 'project/run_id' or a run id")
    if not rows:
        raise RunNotFoundError(f"no run {ref!r}; `trackiod runs` lists them")
    if len(rows) > 1:
        projects = ", ".join(sorted(r["project"] for r in rows))
        raise UsageError(f"run id {ref!r} is in several projects ({projects}); name it as 'project/{ref}'")
    return _run_dict(rows[0])


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
    if project is None:
        rows = dict_rows(conn, f"{_RUN_SELECT} ORDER BY r.id DESC")
    else:
        rows = dict_rows(conn, f"{_RUN_SELECT} WHERE p.name=? ORDER BY r.id DESC", (project,))
    return [run_energy(conn, _run_dict(r), grid_g_per_kwh) for r in rows]


def hardware_used(report: dict[str, Any]) -> str:
    """``"2 x NVIDIA A100-SXM4-80GB (12.5 GPU-hours)"``: GPU models, counts and GPU-hours."""
    counts: dict[str, int] = {}
    for gpu in report["gpus"]:
        counts[gpu["name"]] = counts.get(gpu["name"], 0) + 1
    models = ", ".join(f"{n} x {name}" for name, n in counts.items())
    return f"{models} ({report['gpu_hours']:.3g} GPU-hours)"


def card_yaml(report: dict[str, Any], training_type: str, location: str) -> str:
    """The ``co2_eq_emissions`` block of a Hugging Face model card (emissions in grams, as the Hub expects).

    Raises:
        UsageError: the run has no GPU energy recorded, or ``training_type`` is not one the Hub knows.
    """
    if not report["recorded"]:
        raise UsageError(
            f"run {report['project']}/{report['id']} has no GPU energy recorded (no GPU was seen in use by it); "
            "there is nothing to put in a model card"
        )
    if training_type not in TRAINING_TYPES:
        raise UsageError(f"training type {training_type!r} must be one of {', '.join(TRAINING_TYPES)}")
    grams = report["co2eq_kg"] * 1000
    method = "NVML energy counters" if report["estimated_fraction"] < 0.5 else "NVML power readings"
    source = (
        f"trackiod {__version__}: {method}, {report['gpu_kwh']:.4g} kWh of GPU energy, "
        f"grid intensity {report['grid_g_per_kwh']:g} gCO2eq/kWh"
    )
    lines = [
        "co2_eq_emissions:",
        f"  emissions: {grams:.6g}",
        f"  source: {json.dumps(source)}",
        f"  training_type: {json.dumps(training_type)}",
        f"  geographical_location: {json.dumps(location or 'unknown')}",
        f"  hardware_used: {json.dumps(hardware_used(report))}",
    ]
    return "\n".join(lines) + "\n"


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
    times = np.concatenate([np.frombuffer(r[0], "<f8") for r in rows])
    vals = np.concatenate([np.frombuffer(r[1], "<f8") for r in rows])
    order = np.argsort(times, kind="stable")
    times, vals = times[order], vals[order]
    keep = np.ones(times.size, bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times <= end
    return times[keep], vals[keep]
