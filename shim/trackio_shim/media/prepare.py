"""Splitting one log() call for the wire (log()'s slow path): plain values, rich payloads (histograms, images,
tables, ...) and device values staged for a deferred copy, with a problem noted per key instead of an error.

A list or tuple whose elements are all images, videos, audio or 3-D objects (``log({"k": [Image(a), Image(b)]})``,
as wandb's examples, accelerate's ``log_images`` and Lightning's ``log_image`` send) becomes one gallery value:
each element is stored, and the run page shows them side by side.
"""

from __future__ import annotations

from typing import Any

from trackio_shim.errors import MediaError
from trackio_shim.media import _FRAME_MARGIN, Array, Histogram, Image, Media, is_figure, is_ndarray, is_pil, is_pyplot
from trackio_shim.media import tensors as T
from trackio_shim.media.audio import Audio
from trackio_shim.media.object3d import Object3D
from trackio_shim.media.plotly_figure import Plotly, is_plotly
from trackio_shim.media.video import Video
from trackio_shim.media.wire import Prepared, WireContext
from trackio_shim.session.encoding import ON_DEVICE, ON_HOST, scalar_place

#: What a logged list may hold to become a gallery: values stored as files, one per element.
GALLERY_TYPES = (Image, Video, Audio, Object3D)
#: Elements of one gallery at most.
MAX_GALLERY_ITEMS = 1000


def _auto(value: Any) -> Media | None:
    """The Media a bare value stands for, as wandb converts them: arrays and tensors of more than 32 values
    become Histograms, smaller ones Arrays; figures, pyplot (its current figure) and PIL images become Images
    (wandb turns pyplot into a plotly chart where it can; here it is always an image); plotly figures Plotly."""
    if is_ndarray(value) or T.is_tensor(value):
        size = int(value.size if is_ndarray(value) else value.numel())
        return Histogram(value) if size > 32 else Array(value)
    if is_figure(value) or is_pil(value) or is_pyplot(value):
        return Image(value)
    if is_plotly(value):
        return Plotly(value)
    return None


def _gallery_item(value: Any) -> Media | None:
    """The element of a logged list as a gallery item, or None when the list is not a gallery."""
    if isinstance(value, GALLERY_TYPES):
        return value
    if is_figure(value) or is_pil(value) or is_pyplot(value):
        return Image(value)
    return None


def _gallery(items: list[Media], ctx: WireContext) -> dict[str, Any]:
    """One gallery payload; the elements are read on the host (a tensor image is copied synchronously)."""
    if len(items) > MAX_GALLERY_ITEMS:
        raise MediaError(f"a list of {len(items)} media is over {MAX_GALLERY_ITEMS}; log fewer or split the key")
    payloads, size = [], 0
    for i, item in enumerate(items):
        try:
            payload = item.payload(ctx)
        except MediaError as exc:
            raise MediaError(f"element {i}: {exc}") from None
        size += sum(len(v) for v in payload.values() if isinstance(v, (bytes, str)))
        if size > ctx.max_frame_bytes - _FRAME_MARGIN:
            raise MediaError(
                f"the list's elements up to {i} are over TRACKIOD_MAX_FRAME_BYTES ({ctx.max_frame_bytes:,} bytes) "
                "together; log fewer or smaller elements per call"
            )
        payloads.append(payload)
    return {"_type": "gallery", "items": payloads}


def split_device_scalars(data: dict[Any, Any]) -> tuple[dict[Any, Any], Prepared] | None:
    """A log() call of numbers and one-element device tensors only, under ASCII str keys, split in one pass: the
    numbers, and the tensors for the deferred queue to stack (as :func:`prepare` would split it after
    trackio_shim.session.encoding.clean_log). None for any other call, which then takes that full path.

    This is the training loop's usual call with a CUDA loss in it (``{"loss": loss, "lr": lr}``): one look at
    each key and value instead of a cleaning pass and a walk, so that each further tensor costs about a
    microsecond. Only for ``copy="deferred"``: under ``"sync"`` a tensor is its ``.item()``, which prepare() does.
    """
    plain: dict[Any, Any] = {}
    out = Prepared()
    add_key, add_tensor = out.device_scalars.keys.append, out.device_scalars.tensors.append
    place, on_device = scalar_place, ON_DEVICE  # locals: this loop runs once per value logged
    for key, value in data.items():
        if type(key) is not str or not key.isascii():  # an ASCII str is a valid key as it is
            return None
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            plain[key] = value
        elif place(value) == on_device:
            add_key(key)
            add_tensor(value)
        else:
            return None
    return plain, out


def prepare(data: dict[Any, Any], ctx: WireContext) -> tuple[dict[Any, Any], Prepared]:
    """Split one log() call: the plain values (nested as given) and everything rich, keyed by flat name."""
    out = Prepared()
    plain = _walk(data, "", ctx, out)
    return plain, out


def _walk(data: dict[Any, Any], prefix: str, ctx: WireContext, out: Prepared) -> dict[Any, Any]:
    plain: dict[Any, Any] = {}
    device_keys, device_tensors = out.device_scalars.keys, out.device_scalars.tensors
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            inner = _walk(value, f"{name}/", ctx, out)
            if inner or not value:
                plain[key] = inner
            continue
        try:
            place = scalar_place(value)
            if place:  # a plain one-element tensor: no torch op of its own here
                if place == ON_HOST or ctx.copy == "sync":  # a CPU .item() waits for no device
                    plain[key] = value.item()
                else:
                    device_keys.append(name)
                    device_tensors.append(value)
                continue
            if T.is_tensor(value) and value.numel() == 1:  # a subclass, or a dtype or layout to check: one by one
                if ctx.copy == "sync":
                    T.check_real(value, "a tensor")
                    plain[key] = value.item()
                else:
                    out.staged.append(T.stage_scalar(name, value))
                continue
            if is_ndarray(value) and value.size == 1 and value.dtype.kind in "biuf":
                plain[key] = value.reshape(()).item()
                continue
            if type(value) in (list, tuple) and value:
                items = [_gallery_item(v) for v in value]
                if all(item is not None for item in items):
                    out.media[name] = _gallery([i for i in items if i is not None], ctx)
                    continue
                if any(item is not None or isinstance(v, Media) for item, v in zip(items, value)):
                    raise MediaError(
                        "a logged list may hold only images, videos, audio or 3-D objects (shown as a gallery), "
                        "not a mix with other values"
                    )
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


__all__ = ["GALLERY_TYPES", "MAX_GALLERY_ITEMS", "Prepared", "WireContext", "prepare", "split_device_scalars"]
