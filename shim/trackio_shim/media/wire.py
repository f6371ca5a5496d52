"""What one log() call is prepared with and into: its limits and copy mode, and its values split for the wire.

Its own module so that every rich value type can name these without importing :mod:`.prepare`, which imports
them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trackio_shim.media import tensors as T
from trackio_shim.session.deferred import Scalars, Staged


@dataclass
class WireContext:
    """Limits and the copy mode one log() call works with."""

    copy: str
    max_frame_bytes: int
    max_array_bytes: int


@dataclass
class Prepared:
    """A log() call split for the wire: values sent now, rich payloads sent now, device values staged (one-element
    device tensors in ``device_scalars``, everything else in ``staged``)."""

    scalars: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] = field(default_factory=dict)
    staged: list[Staged] = field(default_factory=list)
    device_scalars: Scalars = field(default_factory=Scalars)  # one-element device tensors, stacked at submit
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, key: str, staged: Staged, ctx: WireContext) -> None:
        """Queue a device value, or resolve it at once when the call asked for ``copy="sync"``."""
        if ctx.copy == "sync":
            is_media, value = T.sync_now(staged)
            (self.media if is_media else self.scalars)[key] = value
        else:
            self.staged.append(staged)
