"""The sampling thread: every interval, one reading of the node (GPUs through NVML, the rest through psutil).

The sampler never touches the database. Each :class:`Sample` goes into a bounded queue that the daemon's
single writer drains (trackiod.sampling.energy turns samples into stored series and per-run energy). Every field is
read in its own guard, so a field a GPU or the OS does not support costs that field, not the sample.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from trackiod.sampling.gpu import FieldUnsupported, GpuIdentity, GpuLost, NvmlProvider, NvmlUnavailable

log = logging.getLogger("trackiod.sampler")

#: Samples kept when the writer falls behind (about 2 hours at the default 2 s); the oldest go first.
QUEUE_SAMPLES = 3600

# NVML field -> the series names it fills (one value each, in this order).
_GPU_SERIES = {
    "utilization": ("utilization_pct", "memory_utilization_pct"),
    "memory": ("memory_used_bytes", "memory_total_bytes"),
    "power": ("power_w",),
    "power_limit": ("power_limit_w",),
    "temperature": ("temperature_c",),
    "clocks": ("sm_clock_mhz", "mem_clock_mhz"),
    "throttle_reasons": ("throttle_reasons",),
}


@dataclass
class GpuReading:
    """One GPU in one sample. ``lost`` GPUs carry no values."""

    index: int
    uuid: str
    name: str
    lost: bool = False
    values: dict[str, float] = field(default_factory=dict)
    energy_mj: int | None = None
    processes: dict[int, float | None] | None = None  # pid -> GPU memory used (None: NVML did not say)
    owners: dict[int, int] = field(default_factory=dict)  # pid on the GPU -> the watched pid it belongs to


@dataclass
class Sample:
    """One reading of the node: wall-clock and monotonic time, GPUs, system, watched processes."""

    ts: float
    mono: float
    gpus: list[GpuReading]
    system: dict[str, float]
    processes: dict[int, dict[str, float]]
    cpu_s: float = 0.0  # CPU time the sampler thread spent taking this sample


class Sampler:
    """Takes samples on its own thread (:meth:`start`) or on demand (:meth:`sample`, for tests and benchmarks)."""

    def __init__(
        self,
        interval_s: float,
        provider: NvmlProvider | None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.provider = provider
        self.wall = wall
        self.mono = mono
        self.queue: collections.deque[Sample] = collections.deque(maxlen=QUEUE_SAMPLES)
        self.gpus: list[GpuIdentity] = []
        self.nvml_status = "not started"
        self.samples = 0
        self.cpu_s_total = 0.0
        self._watched: frozenset[int] = frozenset()
        self._unsupported: set[tuple[int, str]] = set()
        self._failing: set[tuple[int, str]] = set()
        self._lost: set[int] = set()
        self._procs: dict[int, psutil.Process] = {}
        self._owner_cache: dict[int, int | None] = {}
        self._io: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Open NVML (or note why not: one clear log line) and prime psutil's rate counters."""
        if self.provider is None:
            self.nvml_status = "off (TRACKIOD_NVML=off)"
            log.info("GPU sampling is off (TRACKIOD_NVML=off): sampling CPU and system only")
        else:
            try:
                self.gpus = self.provider.open()
                names = ", ".join(f"{g.index}: {g.name}" for g in self.gpus)
                self.nvml_status = f"{len(self.gpus)} GPU(s) via {self.provider.description}"
                log.info("sampling %d GPU(s) through %s (%s)", len(self.gpus), self.provider.description, names)
            except NvmlUnavailable as exc:
                self.provider = None
                self.nvml_status = f"unavailable: {exc}"
                log.info("no NVML (%s): sampling CPU and system only; no GPU energy will be recorded", exc)
        psutil.cpu_percent(interval=None)

    def start(self) -> None:
        """Sample every ``interval_s`` on a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="trackiod-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread and release NVML; True if the thread stopped within ``timeout`` seconds."""
        self._stop.set()
        stopped = True
        if self._thread is not None:
            self._thread.join(timeout)
            stopped = not self._thread.is_alive()
        provider, self.provider = self.provider, None
        if provider is not None:
            provider.close()
        return stopped

    def watch(self, pids: frozenset[int]) -> None:
        """The pids of processes attached to running runs (set by the writer; read by the sampling thread)."""
        self._watched = pids

    def _loop(self) -> None:
        try:
            self.open()
        except Exception:
            log.exception("the sampler could not start; no system or GPU samples will be taken")
            return
        next_at = self.mono()
        while not self._stop.is_set():
            try:
                self.queue.append(self.sample())
            except Exception:  # a sampler bug must cost samples, never the daemon
                log.exception("taking a sample failed")
            next_at += self.interval_s
            now = self.mono()
            if next_at < now:  # fell behind (suspended, overloaded): skip ahead rather than burst
                next_at = now + self.interval_s
            self._stop.wait(next_at - now)

    # ------------------------------------------------------------------ one sample
    def sample(self) -> Sample:
        """Read everything once; call :meth:`open` first."""
        started = time.thread_time()
        watched = self._watched
        gpus = [self._read_gpu(gpu, watched) for gpu in self.gpus] if self.provider is not None else []
        sample = Sample(self.wall(), self.mono(), gpus, self._read_system(), self._read_processes(watched))
        sample.cpu_s = time.thread_time() - started
        self.samples += 1
        self.cpu_s_total += sample.cpu_s
        return sample

    def _read_gpu(self, gpu: GpuIdentity, watched: frozenset[int]) -> GpuReading:
        provider = self.provider
        assert provider is not None
        reading = GpuReading(gpu.index, gpu.uuid, gpu.name)
        try:
            for name, series in _GPU_SERIES.items():
                value = self._field(provider, gpu.index, name)
                if value is None:
                    continue
                parts = value if isinstance(value, tuple) else (value,)
                for key, part in zip(series, parts):
                    reading.values[key] = float(part)
            energy = self._field(provider, gpu.index, "energy")
            reading.energy_mj = int(energy) if energy is not None else None
            procs = self._field(provider, gpu.index, "processes")
            if procs is not None:
                reading.processes = dict(procs)
                reading.values["processes"] = float(len(procs))
                reading.owners = self._owners(procs, watched)
        except GpuLost as exc:
            if gpu.index not in self._lost:
                self._lost.add(gpu.index)
                log.warning(
                    "GPU %d (%s) stopped answering: %s; its energy is not counted until it is back",
                    gpu.index,
                    gpu.uuid,
                    exc,
                )
            return GpuReading(gpu.index, gpu.uuid, gpu.name, lost=True)
        if gpu.index in self._lost:
            self._lost.discard(gpu.index)
            log.warning("GPU %d (%s) answers again", gpu.index, gpu.uuid)
        return reading

    def _field(self, provider: NvmlProvider, index: int, name: str) -> Any:
        if (index, name) in self._unsupported:
            return None
        try:
            value = provider.read(index, name)
        except FieldUnsupported:
            self._unsupported.add((index, name))
            log.info("GPU %d does not support %s; not asking again", index, name)
            return None
        except GpuLost:
            raise
        except Exception as exc:
            if (index, name) not in self._failing:
                self._failing.add((index, name))
                log.warning("GPU %d: reading %s failed (%s); skipping it in this sample", index, name, exc)
            return None
        self._failing.discard((index, name))
        return value

    def _owners(self, procs: dict[int, float | None], watched: frozenset[int]) -> dict[int, int]:
        """Which watched process each GPU process belongs to: itself, or its nearest watched ancestor."""
        owners = {}
        for pid in procs:
            if pid in watched:
                owners[pid] = pid
                continue
            if pid not in self._owner_cache:
                self._owner_cache[pid] = self._watched_ancestor(pid, watched)
            owner = self._owner_cache[pid]
            if owner is not None and owner in watched:
                owners[pid] = owner
        for pid in [p for p in self._owner_cache if p not in procs]:
            del self._owner_cache[pid]  # gone from the GPU; a new process may reuse the pid
        return owners

    @staticmethod
    def _watched_ancestor(pid: int, watched: frozenset[int]) -> int | None:
        try:
            for parent in psutil.Process(pid).parents():
                if parent.pid in watched:
                    return int(parent.pid)
        except psutil.Error:
            pass
        return None

    def _read_system(self) -> dict[str, float]:
        out: dict[str, float] = {}
        now = self.mono()
        try:
            out["cpu.percent"] = float(psutil.cpu_percent(interval=None))
        except Exception:
            pass
        try:
            one, five, fifteen = os.getloadavg()
            out["load.1m"], out["load.5m"], out["load.15m"] = one, five, fifteen
        except (OSError, AttributeError):
            pass
        try:
            mem = psutil.virtual_memory()
            out["memory.used_bytes"] = float(mem.used)
            out["memory.available_bytes"] = float(mem.available)
            out["memory.percent"] = float(mem.percent)
        except Exception:
            pass
        try:
            swap = psutil.swap_memory()
            out["swap.used_bytes"] = float(swap.used)
            out["swap.percent"] = float(swap.percent)
        except Exception:
            pass
        try:
            disk = psutil.disk_io_counters()
            if disk is not None:
                self._rate(out, "disk.read_bytes_per_s", disk.read_bytes, now)
                self._rate(out, "disk.write_bytes_per_s", disk.write_bytes, now)
        except Exception:
            pass
        try:
            net = psutil.net_io_counters()
            self._rate(out, "net.sent_bytes_per_s", net.bytes_sent, now)
            self._rate(out, "net.recv_bytes_per_s", net.bytes_recv, now)
        except Exception:
            pass
        return out

    def _rate(self, out: dict[str, float], key: str, counter: float, now: float) -> None:
        previous = self._io.get(key)
        self._io[key] = (now, float(counter))
        if previous is not None and now > previous[0] and counter >= previous[1]:
            out[key] = (counter - previous[1]) / (now - previous[0])

    def _read_processes(self, watched: frozenset[int]) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for pid in [p for p in self._procs if p not in watched]:
            del self._procs[pid]
        for pid in watched:
            proc = self._procs.get(pid)
            fresh = proc is None
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    cpu = proc.cpu_percent(interval=None)  # the first call has no interval to measure yet
                    values = {"rss_bytes": float(proc.memory_info().rss)}
                if not fresh:
                    values["cpu_percent"] = float(cpu)
                out[pid] = values
            except psutil.Error:
                self._procs.pop(pid, None)
        return out
