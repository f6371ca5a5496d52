"""The real GPU provider: NVML through pynvml (nvidia-ml-py), behind :class:`~trackiod.sampling.gpu.NvmlProvider`.

pynvml is imported when the provider opens, so a node without it (or without a driver) samples the CPU only.
NVML's error codes are sorted here into the interface's kinds: NOT_SUPPORTED is :class:`FieldUnsupported`,
GPU_IS_LOST and NOT_FOUND are :class:`GpuLost`, anything else is a transient failure of that field.
"""

from __future__ import annotations

from typing import Any

from trackiod.sampling.gpu import FieldUnsupported, GpuIdentity, GpuLost, NvmlProvider, NvmlUnavailable


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
