"""The one small interface to NVML the sampler uses, and the real provider on top of pynvml.

A provider answers :meth:`NvmlProvider.read` for one GPU and one field at a time, so the sampler can guard
each field on its own: a field a GPU does not support costs that field, not the sample. Errors are sorted
into three kinds the sampler understands: :class:`FieldUnsupported` (stop asking this GPU for this field),
:class:`GpuLost` (the GPU is gone for now) and anything else (a transient failure of that field).

``TRACKIOD_NVML`` picks the provider (docs/settings.md): ``auto`` (pynvml), ``off``, or, for tests only,
``fake:<script.json>`` (trackiod.testing.fake_nvml).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from trackio_shim.errors import GpuError

log = logging.getLogger("trackiod.nvml")

#: What :meth:`NvmlProvider.read` can be asked, and what it returns.
FIELDS = (
    "utilization",  # (gpu %, memory-controller %)
    "memory",  # (used bytes, total bytes)
    "power",  # watts, current draw
    "power_limit",  # watts, the enforced limit
    "temperature",  # degrees Celsius (GPU die)
    "clocks",  # (SM MHz, memory MHz)
    "throttle_reasons",  # NVML's clock throttle / clocks-event bitmask
    "energy",  # millijoules since the driver loaded (unsigned 64-bit counter)
    "processes",  # {pid: used GPU memory in bytes, or None when NVML does not say}
)


class NvmlUnavailable(GpuError):
    """NVML cannot be used at all: no library, no driver, or no GPU."""


class FieldUnsupported(GpuError):
    """This GPU does not support this field; asking again will not help."""


class GpuLost(GpuError):
    """The GPU stopped answering (fell off the bus, was reset, or was removed)."""


@dataclass(frozen=True)
class GpuIdentity:
    """One physical GPU as NVML enumerates it."""

    index: int
    uuid: str
    name: str


class NvmlProvider:
    """Access to NVML for the sampler. Subclasses implement every method."""

    description = "nvml"

    def open(self) -> list[GpuIdentity]:
        """Initialise NVML and list the GPUs.

        Raises:
            NvmlUnavailable: NVML cannot be used here (the sampler then samples the CPU only).
        """
        raise NotImplementedError

    def read(self, index: int, field: str) -> Any:
        """One field of one GPU (see :data:`FIELDS`).

        Raises:
            FieldUnsupported: the GPU does not support the field.
            GpuLost: the GPU no longer answers.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release NVML."""


class PynvmlProvider(NvmlProvider):
    """The real NVML, through nvidia-ml-py (``import pynvml``)."""

    description = "pynvml"

    def __init__(self) -> None:
        self._nv: Any = None
        self._handles: dict[int, Any] = {}

    def open(self) -> list[GpuIdentity]:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailable(f"pynvml is not installed ({exc}); pip install nvidia-ml-py") from None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ... all mean "not here"
            raise NvmlUnavailable(f"nvmlInit failed: {exc}") from None
        self._nv = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            gpus = []
            for index in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._handles[index] = handle
                gpus.append(GpuIdentity(index, _text(pynvml.nvmlDeviceGetUUID(handle)), _name(pynvml, handle)))
        except Exception as exc:
            self.close()
            raise NvmlUnavailable(f"NVML could not list the GPUs: {exc}") from None
        if not gpus:
            self.close()
            raise NvmlUnavailable("NVML found no GPU")
        return gpus

    def read(self, index: int, field: str) -> Any:
        nv = self._nv
        handle = self._handles[index]
        try:
            return self._read(nv, handle, field)
        except nv.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == nv.NVML_ERROR_NOT_SUPPORTED:
                raise FieldUnsupported(str(exc)) from None
            if code in (nv.NVML_ERROR_GPU_IS_LOST, getattr(nv, "NVML_ERROR_NOT_FOUND", -1)):
                raise GpuLost(str(exc)) from None
            raise

    @staticmethod
    def _read(nv: Any, handle: Any, field: str) -> Any:
        if field == "utilization":
            rates = nv.nvmlDeviceGetUtilizationRates(handle)
            return float(rates.gpu), float(rates.memory)
        if field == "memory":
            info = nv.nvmlDeviceGetMemoryInfo(handle)
            return float(info.used), float(info.total)
        if field == "power":
            return nv.nvmlDeviceGetPowerUsage(handle) / 1000.0
        if field == "power_limit":
            return nv.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
        if field == "temperature":
            return float(nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
        if field == "clocks":
            sm = nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM)
            mem = nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM)
            return float(sm), float(mem)
        if field == "throttle_reasons":
            # Renamed "clocks event reasons" in newer drivers; the bitmask is the same.
            getter = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
            getter = getter or nv.nvmlDeviceGetCurrentClocksThrottleReasons
            return int(getter(handle))
        if field == "energy":
            return int(nv.nvmlDeviceGetTotalEnergyConsumption(handle))
        if field == "processes":
            procs: dict[int, float | None] = {}
            for getter in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    listed = getter(handle)
                except nv.NVMLError as exc:
                    if getattr(exc, "value", None) == nv.NVML_ERROR_NOT_SUPPORTED:
                        continue
                    raise
                proc: Any
                for proc in listed:
                    used = getattr(proc, "usedGpuMemory", None)
                    # NVML reports "not available" (e.g. under MIG or WDDM) as the all-ones value.
                    procs[int(proc.pid)] = float(used) if isinstance(used, int) and 0 <= used < 2**63 else None
            return procs
        raise ValueError(f"unknown NVML field {field!r}")

    def close(self) -> None:
        if self._nv is not None:
            try:
                self._nv.nvmlShutdown()
            except Exception:
                pass
            self._nv = None
        self._handles.clear()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _name(nv: Any, handle: Any) -> str:
    try:
        return _text(nv.nvmlDeviceGetName(handle))
    except Exception:
        return "unknown NVIDIA GPU"


def make_provider(spec: str) -> NvmlProvider | None:
    """The provider ``TRACKIOD_NVML`` names: ``auto``, ``off`` (None), or ``fake:<path>`` (tests only).

    Raises:
        ValueError: the value is none of those.
    """
    if spec == "off":
        return None
    if spec == "auto":
        return PynvmlProvider()
    if spec.startswith("fake:") and len(spec) > 5:
        from trackiod.testing.fake_nvml import ScriptedNvml

        return ScriptedNvml(spec[5:])
    raise ValueError(f"TRACKIOD_NVML={spec!r} is not one of auto, off, fake:<script.json>")
