"""GPU energy attributed to runs, and the node's system series: what the single writer does with samples.

The sampler (trackiod.sampling.sampler) only reads; the daemon's writer thread hands each drained batch of samples
to :meth:`EnergyBook.apply` inside its open transaction. For every GPU and every interval between two of
its samples this module
- works out the energy: the delta of NVML's total-energy counter (a wrap or a reset is recognised), or,
  where the counter is unsupported or implausible, the power draw integrated over the interval;
- works out which running runs used the GPU: those whose processes (or their children) NVML lists on it,
  and those whose process declared it at init (CUDA_VISIBLE_DEVICES, mapped to physical GPUs by UUID);
- splits the interval's energy and GPU time equally among those runs (docs/storage.md, "GPU energy").
Each run's totals go to ``run_gpus`` and its summary (``energy/*``), so the figures are live while it runs.
System and GPU readings are buffered per series and written as chunks to ``system_chunks``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trackiod.ingest.runs import RunBook
from trackiod.sampling.sampler import GpuReading, Sample
from trackiod.store.codec import encode_floats
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.energy")

#: A series' buffered points are written as one chunk after this long (or at shutdown).
SERIES_FLUSH_S = 30.0
#: ... or once it holds this many points.
SERIES_CHUNK_POINTS = 256
#: Intervals longer than this many sample intervals (and at least GAP_MIN_S) are not attributed to anyone:
#: who used the GPU while the daemon was stopped or suspended is unknown.
GAP_INTERVALS = 10
GAP_MIN_S = 60.0
#: Counter widths a backwards step is tried against before it is taken for a reset (driver reload).
WRAP_BITS = (32, 64)
#: With no power limit known, no GPU is believed to draw more than this.
MAX_PLAUSIBLE_W = 3000.0

SUMMARY_KEYS = ("energy/gpu_joules", "energy/gpu_kwh", "energy/gpu_hours", "energy/co2eq_kg")


@dataclass(frozen=True)
class LiveSession:
    """A local process attached to a running run, and the GPUs it declared at init."""

    pid: int
    run_id: int
    info: dict[str, Any]
    #: When the run was created (wall clock): energy from before it is not the run's.
    run_started: float = 0.0


@dataclass
class _GpuState:
    mono: float
    energy_mj: int | None
    power_w: float | None


def _norm_uuid(uuid: str) -> str:
    text = uuid.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def declared_gpus(info: dict[str, Any], gpus: Iterable[tuple[int, str]]) -> set[str]:
    """The physical GPU UUIDs a process says it uses (the shim's ``cuda`` entry of its SESSION info).

    ``device_uuid`` (torch's current device, when CUDA was initialised before init()) wins. Otherwise
    ``visible_devices`` (CUDA_VISIBLE_DEVICES) is read as CUDA reads it: indices or ``GPU-`` UUID prefixes,
    parsing stops at the first entry that names no GPU; indices are NVML's, i.e. PCI bus order
    (CUDA_DEVICE_ORDER=PCI_BUS_ID). With several visible GPUs and a LOCAL_RANK, the process uses the one at
    that position (torchrun's convention). CUDA_VISIBLE_DEVICES unset declares nothing: NVML's process
    lists decide then.
    """
    cuda = info.get("cuda")
    if not isinstance(cuda, dict):
        return set()
    known = list(gpus)
    wanted = cuda.get("device_uuid")
    if isinstance(wanted, str) and wanted.strip():
        hits = [uuid for _, uuid in known if _norm_uuid(uuid).startswith(_norm_uuid(wanted))]
        if len(hits) == 1:
            return set(hits)
    visible = cuda.get("visible_devices")
    if not isinstance(visible, str) or not visible.strip():
        return set()
    picked: list[str] = []
    for raw in visible.split(","):
        entry = raw.strip()
        if entry.isdigit():
            hits = [uuid for index, uuid in known if index == int(entry)]
        elif entry.lower().startswith("gpu-"):
            hits = [uuid for _, uuid in known if _norm_uuid(uuid).startswith(_norm_uuid(entry))]
        else:
            hits = []  # MIG-..., -1, garbage: CUDA stops here
        if len(hits) != 1 or hits[0] in picked:
            break
        picked.append(hits[0])
    rank = cuda.get("local_rank")
    if isinstance(rank, int) and len(picked) > 1 and 0 <= rank < len(picked):
        return {picked[rank]}
    return set(picked)


def energy_delta(
    prev: _GpuState, energy_mj: int | None, power_w: float | None, dt: float, limit_w: float | None
) -> tuple[float, float] | None:
    """Joules a GPU used over ``dt`` seconds, and how many of them are estimated from power; None if unknown.

    The counter's delta is used when both ends have one and it is plausible (at most twice the power limit
    for the interval). A backwards step is a wrap when adding 2**32 or 2**64 makes it plausible, else a
    reset; a reset, an implausible jump or a missing counter fall back to the trapezoid of the power draw.
    """
    ceiling = (2 * limit_w if limit_w else MAX_PLAUSIBLE_W) * dt
    if prev.energy_mj is not None and energy_mj is not None:
        step = energy_mj - prev.energy_mj
        if step < 0:
            step = next(
                (step + 2**bits for bits in WRAP_BITS if 0 <= (step + 2**bits) / 1000 <= ceiling),
                step,
            )
        if 0 <= step / 1000 <= ceiling:
            return step / 1000, 0.0
    powers = [p for p in (prev.power_w, power_w) if p is not None]
    if not powers:
        return None
    joules = sum(powers) / len(powers) * dt
    return joules, joules


class EnergyBook:
    """Applies samples to the store; one instance lives in the daemon's writer thread."""

    def __init__(
        self,
        store: Store,
        runbook: RunBook,
        host: str,
        interval_s: float,
        grid_g_per_kwh: float,
        location: str,
    ) -> None:
        self.store = store
        self.runbook = runbook
        self.host = host
        self.max_gap_s = max(GAP_MIN_S, GAP_INTERVALS * interval_s)
        self.grid_g_per_kwh = grid_g_per_kwh
        self.location = location
        self._node_id: int | None = None
        self._gpu_ids: dict[str, int] = {}
        self._state: dict[str, _GpuState] = {}
        self._series: dict[str, tuple[list[float], list[float]]] = {}
        self._via: dict[tuple[int, int], set[str]] = {}
        self._gap_told: set[str] = set()

    # ------------------------------------------------------------------ who runs here
    def live_sessions(self) -> list[LiveSession]:
        """Local processes attached to running runs (read inside the writer's connection)."""
        rows = self.store.conn.execute(
            "SELECT s.pid, sr.run_id, s.info, r.created_at FROM session_runs sr JOIN sessions s ON s.sid = sr.sid "
            "JOIN runs r ON r.id = sr.run_id WHERE sr.finished = 0 AND r.state = 'running' AND s.host = ? "
            "AND s.pid IS NOT NULL",
            (self.host,),
        ).fetchall()
        out = []
        row: Any
        for row in rows:
            pid, run_id, info, created = row
            try:
                parsed = json.loads(info) if info else {}
            except ValueError:
                parsed = {}
            out.append(
                LiveSession(int(pid), int(run_id), parsed if isinstance(parsed, dict) else {}, float(created or 0.0))
            )
        return out

    # ------------------------------------------------------------------ samples in
    def apply(self, samples: list[Sample], sessions: list[LiveSession]) -> None:
        """Store the samples' series and attribute their GPU energy; call inside an open transaction."""
        pending: dict[tuple[int, int], list[float]] = {}
        for sample in samples:
            self._apply_one(sample, sessions, pending)
        self._save(pending)
        self.flush_series(now=samples[-1].ts if samples else time.time())

    def _apply_one(
        self, sample: Sample, sessions: list[LiveSession], pending: dict[tuple[int, int], list[float]]
    ) -> None:
        node_id = self._node(sample.ts)
        ts = sample.ts
        for key, value in sample.system.items():
            self._point(key, ts, value)
        for pid, values in sample.processes.items():
            for key, value in values.items():
                self._point(f"proc.{pid}.{key}", ts, value)
        runs_of_pid: dict[int, set[int]] = {}
        started: dict[int, float] = {}
        for session in sessions:
            runs_of_pid.setdefault(session.pid, set()).add(session.run_id)
            started[session.run_id] = session.run_started
        identities = [(g.index, g.uuid) for g in sample.gpus]
        declared = [(s.run_id, declared_gpus(s.info, identities)) for s in sessions]
        for reading in sample.gpus:
            gpu_id = self._gpu(node_id, reading, ts)
            if reading.lost:
                self._state.pop(reading.uuid, None)  # no energy across the gap; the next reading starts afresh
                continue
            for key, value in reading.values.items():
                self._point(f"gpu.{reading.index}.{key}", ts, value)
            prev = self._state.get(reading.uuid)
            power = reading.values.get("power_w")
            self._state[reading.uuid] = _GpuState(sample.mono, reading.energy_mj, power)
            if prev is None:
                continue
            dt = sample.mono - prev.mono
            if dt <= 0:
                continue
            if dt > self.max_gap_s:
                if reading.uuid not in self._gap_told:
                    self._gap_told.add(reading.uuid)
                    log.warning(
                        "GPU %d: %.0f s between samples; energy of such gaps is not attributed", reading.index, dt
                    )
                continue
            users = self._users(reading, runs_of_pid, declared)
            if not users:
                continue  # idle, or someone else's: it stays in the node's series only
            delta = energy_delta(prev, reading.energy_mj, power, dt, reading.values.get("power_limit_w"))
            joules, estimated = delta if delta is not None else (0.0, 0.0)
            shares = interval_shares({run_id: started.get(run_id, 0.0) for run_id in users}, ts - dt, ts)
            for run_id, via in users.items():
                part = shares[run_id]
                acc = pending.setdefault((run_id, gpu_id), [0.0, 0.0, 0.0, ts, ts])
                acc[0] += joules * part
                acc[1] += estimated * part
                acc[2] += dt * part
                acc[4] = ts
                self._note_via(run_id, gpu_id, via)

    @staticmethod
    def _users(
        reading: GpuReading, runs_of_pid: dict[int, set[int]], declared: list[tuple[int, set[str]]]
    ) -> dict[int, set[str]]:
        users: dict[int, set[str]] = {}
        for owner in set(reading.owners.values()):
            for run_id in runs_of_pid.get(owner, ()):
                users.setdefault(run_id, set()).add("nvml")
        for run_id, uuids in declared:
            if reading.uuid in uuids:
                users.setdefault(run_id, set()).add("declared")
        return users

    def _note_via(self, run_id: int, gpu_id: int, via: set[str]) -> None:
        known = self._via.get((run_id, gpu_id))
        if known is None:  # first time since the daemon started: keep what earlier daemons saw
            row = self.store.conn.execute(
                "SELECT via FROM run_gpus WHERE run_id=? AND gpu_id=?", (run_id, gpu_id)
            ).fetchone()
            known = self._via[(run_id, gpu_id)] = set(row[0].split(",")) if row else set()
        known.update(via)

    def _save(self, pending: dict[tuple[int, int], list[float]]) -> None:
        if not pending:
            return
        conn = self.store.conn
        conn.executemany(
            "INSERT INTO run_gpus(run_id, gpu_id, via, joules, estimated_joules, gpu_seconds, first_ts, last_ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, gpu_id) DO UPDATE SET via=excluded.via, "
            "joules=joules+excluded.joules, estimated_joules=estimated_joules+excluded.estimated_joules, "
            "gpu_seconds=gpu_seconds+excluded.gpu_seconds, last_ts=excluded.last_ts",
            [
                (run_id, gpu_id, ",".join(sorted(self._via[(run_id, gpu_id)])), *acc)
                for (run_id, gpu_id), acc in pending.items()
            ],
        )
        now = time.time()
        for run_id in {run_id for run_id, _ in pending}:
            conn.execute(
                "INSERT INTO run_energy(run_id, grid_g_per_kwh, location, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET grid_g_per_kwh=excluded.grid_g_per_kwh, "
                "location=excluded.location, updated_at=excluded.updated_at",
                (run_id, self.grid_g_per_kwh, self.location, now),
            )
            row = conn.execute(
                "SELECT SUM(joules), SUM(gpu_seconds) FROM run_gpus WHERE run_id=?", (run_id,)
            ).fetchone()
            assert row is not None
            self.runbook.set_system_summary(run_id, summary_items(row[0] or 0.0, row[1] or 0.0, self.grid_g_per_kwh))

    # ------------------------------------------------------------------ nodes, GPUs, series
    def _node(self, ts: float) -> int:
        conn = self.store.conn
        if self._node_id is None:
            conn.execute(
                "INSERT INTO nodes(host, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT(host) DO NOTHING",
                (self.host, ts, ts),
            )
            row = conn.execute("SELECT id FROM nodes WHERE host=?", (self.host,)).fetchone()
            assert row is not None
            self._node_id = int(row[0])
        conn.execute("UPDATE nodes SET last_seen=? WHERE id=?", (ts, self._node_id))
        return self._node_id

    def _gpu(self, node_id: int, reading: GpuReading, ts: float) -> int:
        conn = self.store.conn
        values = reading.values
        if reading.uuid not in self._gpu_ids:
            conn.execute(
                "INSERT INTO gpus(node_id, uuid, idx, name, memory_total, power_limit_w, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(uuid) DO UPDATE SET node_id=excluded.node_id, "
                "idx=excluded.idx, name=excluded.name",
                (node_id, reading.uuid, reading.index, reading.name, None, None, ts, ts),
            )
            row = conn.execute("SELECT id FROM gpus WHERE uuid=?", (reading.uuid,)).fetchone()
            assert row is not None
            self._gpu_ids[reading.uuid] = int(row[0])
        gpu_id = self._gpu_ids[reading.uuid]
        if not reading.lost:
            conn.execute(
                "UPDATE gpus SET last_seen=?, memory_total=COALESCE(?, memory_total), "
                "power_limit_w=COALESCE(?, power_limit_w) WHERE id=?",
                (ts, values.get("memory_total_bytes"), values.get("power_limit_w"), gpu_id),
            )
        return gpu_id

    def _point(self, key: str, ts: float, value: float) -> None:
        times, vals = self._series.setdefault(key, ([], []))
        times.append(ts)
        vals.append(value)

    def flush_series(self, now: float, force: bool = False) -> None:
        """Write buffered series as chunks: full ones, ones older than SERIES_FLUSH_S, or all (``force``)."""
        if self._node_id is None:
            return
        rows = []
        for key, (times, vals) in list(self._series.items()):
            if not times:
                continue
            if force or len(times) >= SERIES_CHUNK_POINTS or now - times[0] >= SERIES_FLUSH_S:
                t = np.asarray(times, np.float64)
                rows.append(
                    (
                        self._node_id,
                        self.store.key_id(key),
                        t.size,
                        float(t.min()),
                        float(t.max()),
                        encode_floats(t),
                        encode_floats(vals),
                    )
                )
                del self._series[key]
        if rows:
            self.store.conn.executemany(
                "INSERT INTO system_chunks(node_id, key_id, n, ts_min, ts_max, times, vals) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    @property
    def buffered(self) -> bool:
        return any(times for times, _ in self._series.values())


def interval_shares(begins: dict[int, float], start: float, end: float) -> dict[int, float]:
    """Each run's fraction of a GPU interval ``[start, end]``: split equally among the runs that existed.

    A run counts from ``begins[run]`` (its creation) on, so an interval stretched back by a late sample
    never gives a run energy from before it existed; that part goes to the runs that did exist, or to none.
    """
    span = end - start
    cuts = sorted({start, end, *(min(max(b, start), end) for b in begins.values())})
    out = dict.fromkeys(begins, 0.0)
    for lo, hi in itertools.pairwise(cuts):
        present = [run for run, begin in begins.items() if begin <= lo]
        for run in present:
            out[run] += (hi - lo) / span / len(present)
    return out


def summary_items(joules: float, gpu_seconds: float, grid_g_per_kwh: float) -> dict[str, float]:
    """The ``energy/*`` summary values of a run from its totals."""
    kwh = joules / 3.6e6
    return {
        "energy/gpu_joules": round(joules, 3),
        "energy/gpu_kwh": round(kwh, 9),
        "energy/gpu_hours": round(gpu_seconds / 3600, 6),
        "energy/co2eq_kg": round(kwh * grid_g_per_kwh / 1000, 9),
    }
