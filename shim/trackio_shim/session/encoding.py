"""Turning logged values into msgpack, off the hot path: the ``default=`` hook, the salvage path, and config
values made wire-friendly (:func:`json_friendly`).

msgpack packs bool, int, float, str and dicts natively, so the hot path is a single ``pack``. Only an
unusual value reaches :func:`encode_default` (numpy scalars and 0-d arrays; tensors and rich values make the
pack fail so that log() takes its slow path, trackio_shim.media.prepare.prepare), and only
a value nobody can encode reaches :func:`salvage`, which drops that key, warns once, and keeps the rest.
numpy and torch are never imported here: their values are recognised by their type's module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from trackio_shim._warn import warn_once


def json_friendly(value: Any) -> Any:
    """Config values as msgpack/JSON-friendly data: containers kept, unknown objects as their str()."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_friendly(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_friendly(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return json_friendly(value.item())
    if hasattr(value, "tolist"):
        return json_friendly(value.tolist())
    return str(value)


def encode_default(obj: Any) -> Any:
    """msgpack ``default=`` hook: numpy scalars and 0-d arrays as Python scalars; tensors are refused.

    Raises:
        TypeError: the value has no scalar form here (the caller's salvage path then names the key).
    """
    module = type(obj).__module__
    if module == "numpy":
        if getattr(obj, "ndim", None) == 0:  # numpy scalars and 0-d arrays alike
            return obj.item()
    elif module.startswith("torch"):
        # Refused here on purpose, even 0-d CPU tensors: log() then takes its slow path, which copies every
        # tensor through the deferred queue (trackio_shim.media.tensors) or, with copy="sync", calls .item().
        raise TypeError("tensors are logged by log()'s tensor path, not packed directly")
    raise TypeError(f"cannot log a value of type {type(obj).__module__}.{type(obj).__qualname__}")


def _describe(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _clean(data: dict[Any, Any], packer: msgpack.Packer, prefix: str, budget: int) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out[key] = _clean(value, packer, f"{name}/", budget)
            continue
        try:
            size = len(packer.pack(value))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, TypeError) else f"{type(exc).__name__}: {exc}"
            warn_once(
                ("unsupported", name, type(value)),
                f"trackio_shim: key {name!r}: {_describe(value)} cannot be logged ({reason}); "
                "log a number, bool or str (the rest of this call is kept)",
            )
            continue
        if size > budget:
            warn_once(
                ("too-big", name),
                f"trackio_shim: key {name!r}: value of {size} bytes is over the frame limit of {budget} "
                "bytes (TRACKIOD_MAX_FRAME_BYTES); it was dropped, the rest of this call is kept",
            )
            continue
        out[key] = value
    return out


def salvage(packer: msgpack.Packer, message: list[Any], max_frame: int) -> bytes | None:
    """Pack ``message`` after dropping (with a one-time warning) the values that cannot be sent.

    The last element is the payload (a LOG's data, a CONFIG's or SUMMARY's items). Returns None when nothing
    sendable is left or the message is still over ``max_frame`` bytes.
    """
    payload = message[-1]
    if isinstance(payload, dict):
        payload = _clean(payload, packer, "", max_frame)
    try:
        frame: bytes = packer.pack([*message[:-1], payload])
    except Exception as exc:
        warn_once(("unpackable", type(exc)), f"trackio_shim: a call could not be encoded and was dropped: {exc}")
        return None
    if len(frame) > max_frame:
        warn_once(
            "frame-too-big",
            f"trackio_shim: one call encodes to {len(frame)} bytes, over the frame limit of {max_frame}; "
            "it was dropped (split it across several log() calls)",
        )
        return None
    return frame
