"""Splitting one log() call for the wire (log()'s slow path): plain values, rich payloads (histograms, images,
tables, ...) and device values staged for a deferred copy, with a problem noted per key instead of an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trackio_shim.errors import MediaError
from trackio_shim.media import Array, Histogram, Image, Media, is_figure, is_ndarray, is_pil
from trackio_shim.media import tensors as T
from trackio_shim.session.deferred import Staged


@dataclass
class WireContext:
    """Limits and the copy mode one log() call works with."""

    copy: str
    max_frame_bytes: int
    max_array_bytes: int


@dataclass
class Prepared:
    """A log() call split for the wire: values sent now, rich payloads sent now, device values staged."""

    scalars: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] = field(default_factory=dict)
    staged: list[Staged] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, key: str, staged: Staged, ctx: WireContext) -> None:
        """Queue a device value, or resolve it at once when the call asked for ``copy="sync"``."""
        if ctx.copy == "sync":
            is_media, value = T.sync_now(staged)
            (self.media if is_media else self.scalars)[key] = value
        else:
            self.staged.append(staged)


def _auto(value: Any) -> Media | None:
    """The Media a bare value stands for, as wandb converts them: arrays and tensors of more than 32 values
    become Histograms, smaller ones Arrays; figures and PIL images become Images."""
    if is_ndarray(value) or T.is_tensor(value):
        size = int(value.size if is_ndarray(value) else value.numel())
        return Histogram(value) if size > 32 else Array(value)
    if is_figure(value) or is_pil(value):
        return Image(value)
    return None


def prepare(data: dict[Any, Any], ctx: WireContext) -> tuple[dict[Any, Any], Prepared]:
    """Split one log() call: the plain values (nested as given) and everything rich, keyed by flat name."""
    out = Prepared()
    plain = _walk(data, "", ctx, out)
    return plain, out


def _walk(data: dict[Any, Any], prefix: str, ctx: WireContext, out: Prepared) -> dict[Any, Any]:
    plain: dict[Any, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            inner = _walk(value, f"{name}/", ctx, out)
            if inner or not value:
                plain[key] = inner
            continue
        try:
            if T.is_tensor(value) and value.numel() == 1:
                if ctx.copy == "sync":
                    T.check_real(value, "a tensor")
                    plain[key] = value.item()
                else:
                    out.staged.append(T.stage_scalar(name, value))
                continue
            if is_ndarray(value) and value.size == 1 and value.dtype.kind in "biuf":
                plain[key] = value.reshape(()).item()
                continue
            rich = value if isinstance(value, Media) else _auto(value)
            if rich is None:
                plain[key] = value
            else:
                rich._wire(name, ctx, out)
        except MediaError as exc:
            out.problems.append((name, str(exc)))
        except Exception as exc:  # a value we could not even inspect must not cost the rest of the call
            out.problems.append((name, f"{type(exc).__name__}: {exc}"))
    return plain
