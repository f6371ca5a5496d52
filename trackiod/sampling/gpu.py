"""The one small interface to a GPU the sampler uses: :class:`NvmlProvider`, what it returns and how it fails.

A provider answers :meth:`NvmlProvider.read` for one GPU and one field at a time, so the sampler can guard
each field on its own: a field a GPU does not support costs that field, not the sample. Errors are sorted
into three kinds the sampler understands: :class:`FieldUnsupported` (stop asking this GPU for this field),
:class:`GpuLost` (the GPU is gone for now) and anything else (a transient failure of that field).

This module imports nothing else of trackiod's: the real provider (:mod:`trackiod.sampling.nvml`) and the
tests' scripted one (:mod:`trackiod.testing.fake_nvml`) both build on it, and
:mod:`trackiod.sampling.providers` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trackio_shim.errors import GpuError

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
