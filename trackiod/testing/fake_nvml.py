"""FOR TESTS ONLY: a scripted stand-in for NVML, selected with ``TRACKIOD_NVML=fake:<script.json>``.

CI machines have no GPU, so the daemon's GPU paths are exercised against this fake. It behaves like the
real thing where it matters: each GPU's energy counter advances with its power draw, and the power draw
follows the load the script sets, so a busy GPU gathers energy faster than an idle one. The script is a
JSON file that tests rewrite while the daemon runs (it is re-read when its modification time changes):

```json
{"gpus": [{"uuid": "GPU-0000", "name": "Fake A100", "utilization": 100, "idle_w": 50, "max_w": 400,
           "memory_total": 4.0e10, "processes": {"1234": 1.0e9}, "unsupported": ["energy"],
           "lost": false, "energy_start_mj": 18446744073709000000, "counter_bits": 64}],
 "no_driver": false}
```

- power = ``idle_w + (max_w - idle_w) * utilization / 100``; the energy counter integrates it over time
  and wraps at ``2**counter_bits`` (starting near the top tests a wrap);
- ``unsupported`` fields raise :class:`FieldUnsupported`, as NVML's NOT_SUPPORTED;
- ``lost: true``, or a GPU missing from the script, raises :class:`GpuLost` on every read;
- ``no_driver: true`` makes :meth:`open` fail, as nvmlInit does without a driver.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trackiod.sampling.gpu import FieldUnsupported, GpuIdentity, GpuLost, NvmlProvider, NvmlUnavailable


class ScriptedNvml(NvmlProvider):
    """A fake NVML driven by a JSON script; see the module docstring. Not for production use."""

    description = "fake NVML (tests only)"

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.clock = clock
        self._mtime: float | None = None
        self._gpus: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._counters: dict[str, float] = {}
        self._last: float | None = None
        self.no_driver = False

    def open(self) -> list[GpuIdentity]:
        self._reload(force=True)
        if self.no_driver:
            raise NvmlUnavailable("nvmlInit failed: Driver Not Loaded (fake NVML script says no_driver)")
        if not self._order:
            raise NvmlUnavailable("NVML found no GPU (fake NVML script lists none)")
        return [
            GpuIdentity(i, uuid, str(self._gpus[uuid].get("name", "Fake GPU"))) for i, uuid in enumerate(self._order)
        ]

    def _reload(self, force: bool = False) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if not force and mtime == self._mtime:
            return
        try:
            script = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return  # caught mid-rewrite: keep the previous script
        self._advance()  # energy so far accrues at the old load
        self._mtime = mtime
        self.no_driver = bool(script.get("no_driver"))
        gpus = {str(g["uuid"]): g for g in script.get("gpus", [])}
        if force or not self._order:
            self._order = list(gpus)
        for uuid in gpus:
            if uuid not in self._counters:
                self._counters[uuid] = 0.0  # millijoules used since the fake started
        self._gpus = gpus

    def _power(self, gpu: dict[str, Any]) -> float:
        idle, peak = float(gpu.get("idle_w", 50.0)), float(gpu.get("max_w", 300.0))
        return idle + (peak - idle) * float(gpu.get("utilization", 0.0)) / 100.0

    def _advance(self) -> None:
        now = self.clock()
        if self._last is not None:
            for uuid, gpu in self._gpus.items():
                if not gpu.get("lost"):
                    self._counters[uuid] += self._power(gpu) * (now - self._last) * 1000.0
        self._last = now

    def read(self, index: int, field: str) -> Any:
        self._reload()
        self._advance()
        uuid = self._order[index] if index < len(self._order) else None
        gpu = self._gpus.get(uuid) if uuid is not None else None
        if gpu is None or gpu.get("lost"):
            raise GpuLost(f"GPU {index} is lost (fake NVML)")
        if field in gpu.get("unsupported", ()):
            raise FieldUnsupported(f"{field} is not supported (fake NVML)")
        util = float(gpu.get("utilization", 0.0))
        procs = {int(pid): (None if mem is None else float(mem)) for pid, mem in gpu.get("processes", {}).items()}
        total = float(gpu.get("memory_total", 4.0e10))
        if field == "utilization":
            return util, util / 2
        if field == "memory":
            return min(total, sum(m or 0.0 for m in procs.values()) + 4.0e8), total
        if field == "power":
            return self._power(gpu)
        if field == "power_limit":
            return float(gpu.get("max_w", 300.0))
        if field == "temperature":
            return 30.0 + util * 0.5
        if field == "clocks":
            return (1980.0 if util else 210.0), 1593.0
        if field == "throttle_reasons":
            return 0 if util else 1  # 1 = GPU idle
        if field == "energy":
            # Integer arithmetic: a float near 2**64 cannot hold single millijoules.
            start, bits = int(gpu.get("energy_start_mj", 0)), int(gpu.get("counter_bits", 64))
            return (start + round(self._counters[str(uuid)])) % 2**bits
        if field == "processes":
            return procs
        raise ValueError(f"unknown NVML field {field!r}")
