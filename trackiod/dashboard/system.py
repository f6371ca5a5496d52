"""The system panel's reads: a node's sampled series cut to each run's host and time, per pixel like the charts.

System series are stored per node (host) with epoch timestamps (``system_chunks``), not per run. A run's view of
them is its host's series over ``[created_at, ended_at]`` (until now while it runs), with x in seconds since the
run started, so runs that ran at different times line up. Two series are derived per run: the run's processes
(``proc.PID.*`` of the pids its sessions registered, summed) and the cumulative energy of the GPUs the run was
attributed energy on (the trapezoid integral of their power series over the run's window).
"""

from __future__ import annotations

import re
import time
from typing import Any

import apsw
import numpy as np

from trackiod.dashboard.downsample import align, json_values
from trackiod.read.energy import run_energy, system_keys, system_series

#: Node series the panel draws, in this order, with their section and unit; ``N`` stands for a GPU index.
PANEL_SERIES: tuple[tuple[str, str, str], ...] = (
    ("gpu.N.power_w", "GPU power", "W"),
    ("gpu.energy_j", "Energy", "J"),
    ("gpu.N.utilization_pct", "GPU utilisation", "%"),
    ("gpu.N.memory_utilization_pct", "GPU utilisation", "%"),
    ("gpu.N.memory_used_bytes", "GPU memory", "bytes"),
    ("gpu.N.temperature_c", "GPU temperature", "°C"),
    ("cpu.percent", "CPU", "%"),
    ("load.1m", "CPU", ""),
    ("process.cpu_percent", "CPU", "%"),
    ("memory.used_bytes", "Memory", "bytes"),
    ("memory.percent", "Memory", "%"),
    ("process.rss_bytes", "Memory", "bytes"),
    ("swap.used_bytes", "Memory", "bytes"),
    ("disk.read_bytes_per_s", "Disk and network", "bytes/s"),
    ("disk.write_bytes_per_s", "Disk and network", "bytes/s"),
    ("net.sent_bytes_per_s", "Disk and network", "bytes/s"),
    ("net.recv_bytes_per_s", "Disk and network", "bytes/s"),
)
_GPU_KEY = re.compile(r"^gpu\.(\d+)\.(.+)$")
_PROC_KEY = re.compile(r"^proc\.(\d+)\.(rss_bytes|cpu_percent)$")


def _pattern(key: str) -> str:
    match = _GPU_KEY.match(key)
    return f"gpu.N.{match.group(2)}" if match else key


_ORDER = {name: i for i, (name, _, _) in enumerate(PANEL_SERIES)}
_META = {name: (section, unit) for name, section, unit in PANEL_SERIES}


def _sort_key(key: str) -> tuple[int, int, str]:
    match = _GPU_KEY.match(key)
    return (_ORDER.get(_pattern(key), len(_ORDER)), int(match.group(1)) if match else -1, key)


def _window(run: dict[str, Any], now: float) -> tuple[float, float]:
    end = run["ended_at"] or (now if run["state"] == "running" else run["updated_at"])
    return float(run["created_at"]), float(max(end, run["created_at"]))


def _sum_series(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Series sampled at (mostly) the same instants, added up on the union of their times (absent = 0)."""
    parts = [p for p in parts if p[0].size]
    if not parts:
        return np.empty(0), np.empty(0)
    if len(parts) == 1:
        return parts[0]
    times = np.unique(np.concatenate([t for t, _ in parts]))
    total = np.zeros(times.size)
    for t, v in parts:
        total[np.searchsorted(times, t)] += v
    return times, total


def _cumulative_energy(conn: apsw.Connection, host: str, gpus: list[int], lo: float, hi: float) -> Any:
    """Joules the given GPUs drew since ``lo``: each one's power integrated (trapezoids), summed on a union of times."""
    curves = []
    for index in gpus:
        t, watts = system_series(conn, host, f"gpu.{index}.power_w", lo, hi)
        if t.size < 2:
            continue
        joules = np.concatenate(([0.0], np.cumsum(np.diff(t) * (watts[1:] + watts[:-1]) / 2)))
        curves.append((t, joules))
    if not curves:
        return np.empty(0), np.empty(0)
    times = np.unique(np.concatenate([t for t, _ in curves]))
    return times, sum(np.interp(times, t, j) for t, j in curves)


def _run_series(conn: apsw.Connection, run: dict[str, Any], node_keys: list[str], now: float) -> dict[str, Any]:
    """``{key: (seconds since start, values)}`` of one run's window on its host."""
    host = run["host"]
    lo, hi = _window(run, now)
    out: dict[str, Any] = {}
    procs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    pids = {str(p) for p in run.get("pids") or []}
    for key in node_keys:
        proc = _PROC_KEY.match(key)
        if proc:
            if proc.group(1) in pids:
                procs.setdefault(f"process.{proc.group(2)}", []).append(system_series(conn, host, key, lo, hi))
            continue
        if _pattern(key) not in _ORDER:
            continue
        t, v = system_series(conn, host, key, lo, hi)
        if t.size:
            out[key] = (t - lo, v)
    for key, parts in procs.items():
        t, v = _sum_series(parts)
        if t.size:
            out[key] = (t - lo, v)
    used = [
        int(i)
        for (i,) in conn.execute(
            "SELECT g.idx FROM run_gpus rg JOIN gpus g ON g.id = rg.gpu_id JOIN nodes n ON n.id = g.node_id "
            "WHERE rg.run_id=? AND n.host=? ORDER BY g.idx",
            (run["id"], host),
        )
    ]
    t, joules = _cumulative_energy(conn, host, used, lo, hi)
    if t.size:
        out["gpu.energy_j"] = (t - lo, joules)
    return out


def system_panel(conn: apsw.Connection, runs: list[dict[str, Any]], width: int) -> dict[str, Any]:
    """The ``/api/system`` answer for the given runs (docs/dashboard.md)."""
    available = conn.execute("SELECT 1 FROM system_chunks LIMIT 1").fetchone() is not None
    now = time.time()
    per_run: list[tuple[dict[str, Any], dict[str, Any]]] = []
    keys_by_host: dict[str, list[str]] = {}
    for run in runs:
        host = run["host"]
        if host not in keys_by_host:
            keys_by_host[host] = system_keys(conn, host).get(host, [])
        per_run.append((run, _run_series(conn, run, keys_by_host[host], now)))
    all_keys = sorted({k for _, series in per_run for k in series}, key=_sort_key)
    charts = []
    for key in all_keys:
        present = [(run, series[key]) for run, series in per_run if key in series]
        grid, columns, reduced = align([s[0] for _, s in present], [s[1] for _, s in present], width)
        section, unit = _META.get(_pattern(key), ("Other", ""))
        charts.append(
            {
                "key": key,
                "section": section,
                "unit": unit,
                "reduced": reduced,
                "x": json_values(grid),
                "series": [
                    {"run": run["run_key"], "host": run["host"], "points": int(s[0].size), "y": json_values(col)}
                    for (run, s), col in zip(present, columns)
                ],
            }
        )
    energy = {}
    for run in runs:
        report = run_energy(conn, run)
        if report["recorded"]:
            energy[run["run_key"]] = report
    return {"available": available, "width": width, "charts": charts, "energy": energy}
