"""Turning logged values into msgpack, off the hot path: the ``default=`` hook, the cleaning of a call that
took the slow path (:func:`clean_log`), the salvage path, and config values made wire-friendly
(:func:`json_friendly`).

msgpack packs bool, int, float, str and dicts natively, so the hot path is a single ``pack``. That pack is
strict (:func:`hot_packer`): a tuple anywhere, a key included, or a subclass of a plain type goes to
:func:`encode_default`, which converts what it safely can and refuses tuples, so a call holding one takes the
slow path. A non-str key must never reach the wire: msgpack would write ``("layer", 1)`` as an array, which no
decoder can use as a map key, and the whole frame would be lost (docs/robustness.md, "One poisoned call").

On the slow path every key and value a user passes is checked here before anything else touches it, and
nothing here raises: a key that is not a str, a lone surrogate, a dict nested deeper than :data:`MAX_DEPTH` or
holding itself, an object whose ``str()``/``repr()``/``tolist()`` raises, is dropped with one warning naming it,
and the rest of the call is kept. numpy and torch are never imported here: their values are recognised by
their type's module (torch is looked up only once a value of a torch type has arrived, so it is imported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from trackio_shim._warn import warn_once

#: Deepest nesting of dicts (and lists) kept in one log() call, config or summary value; the daemon refuses
#: deeper config and summary values (trackiod.ingest.guard.MAX_VALUE_DEPTH is the same 64).
MAX_DEPTH = 64
#: Integers msgpack can carry (int64 and uint64).
_INT_MIN, _INT_END = -(2**63), 2**64
_DROP = object()


def hot_packer() -> msgpack.Packer:
    """The packer of log()'s hot path: strict, so that tuples (as keys above all) and subclasses reach
    :func:`encode_default` instead of being packed as arrays, ints or strs. Its messages must be lists."""
    return msgpack.Packer(default=encode_default, use_bin_type=True, strict_types=True)


def encode_default(obj: Any) -> Any:
    """msgpack ``default=`` hook: numpy scalars and 0-d arrays as Python scalars, one-element CPU tensors as their
    ``.item()`` (:func:`cpu_scalar`), subclasses of plain types as their plain type; other tensors and tuples are
    refused.

    Raises:
        TypeError: the value has no plain form here (log() then takes its slow path, which names the key).
    """
    kind = type(obj)
    if kind in _cpu_tensor_kinds:  # cpu_scalar() inline and first: it runs once per tensor on log()'s hot path
        tensor, strided, real = obj, _torch_kinds[2], _torch_kinds[3]  # type: ignore[index]
        if tensor.is_cpu and tensor.numel() == 1 and tensor.dtype in real and tensor.layout is strided:
            return tensor.item()
        raise TypeError("tensors are logged by log()'s tensor path, not packed directly")
    module = kind.__module__
    if module == "numpy":
        if getattr(obj, "ndim", None) == 0:  # numpy scalars and 0-d arrays alike
            return obj.item()
    elif module.startswith("torch"):
        # A one-element CPU tensor is its .item(): exact, a fraction of a microsecond, and no device to wait for,
        # so log({"loss": cpu_tensor}) stays on the hot path (the first torch value seen comes here, and fills
        # _cpu_tensor_kinds for the branch above). Everything else (CUDA and other devices, tensor subclasses,
        # complex and quantized dtypes) is refused: log()'s slow path stages it for a deferred copy
        # (trackio_shim.media.tensors) or names the key.
        if cpu_scalar(obj):
            return obj.item()
        raise TypeError("tensors are logged by log()'s tensor path, not packed directly")
    elif isinstance(obj, tuple):
        raise TypeError("a tuple is not a loggable value or key")  # a key would become an array: see the docstring
    elif isinstance(obj, dict):
        return dict(obj)
    elif isinstance(obj, list):
        return list(obj)
    elif isinstance(obj, str):
        return str.__str__(obj)
    elif isinstance(obj, int):  # bool cannot be subclassed; IntEnum and friends
        return int.__index__(obj)
    elif isinstance(obj, float):
        return float.__float__(obj)
    raise TypeError(f"cannot log a value of type {module}.{kind.__qualname__}")


#: (torch.Tensor, torch.nn.Parameter, torch.strided, the real dtypes) once a torch value has been seen.
_torch_kinds: tuple[Any, Any, Any, frozenset[Any]] | None = None
#: (torch.Tensor, torch.nn.Parameter) once a torch value has been seen: the types :func:`cpu_scalar` accepts.
_cpu_tensor_kinds: tuple[Any, ...] = ()
#: What :func:`scalar_place` says of a plain one-element tensor: its value is in host memory, or on a device.
ON_HOST, ON_DEVICE = 1, 2


def scalar_place(obj: Any) -> int:
    """:data:`ON_HOST` or :data:`ON_DEVICE` for a plain one-element, real, strided torch tensor, else 0.

    Only ``torch.Tensor`` and ``torch.nn.Parameter`` themselves: a subclass (a distributed tensor, say) may do
    more on ``.item()`` or in a ``torch.stack`` than read memory. A value on the host is its ``.item()``, which
    waits for nothing; one on a device is stacked with its call's others for one deferred copy
    (trackio_shim.session.deferred.Scalars). torch is looked up once, and only after a value of a torch type
    arrived (this runs once per tensor logged, where an ``import`` statement would be a fifth of the budget).
    """
    global _torch_kinds, _cpu_tensor_kinds
    if _torch_kinds is None:
        if not type(obj).__module__.startswith("torch"):
            return 0
        import torch

        ints = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
        floats = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        _torch_kinds = (torch.Tensor, torch.nn.Parameter, torch.strided, frozenset(ints + floats))
        _cpu_tensor_kinds = (torch.Tensor, torch.nn.Parameter)
    tensor, parameter, strided, real = _torch_kinds
    kind = type(obj)
    if (kind is tensor or kind is parameter) and obj.numel() == 1 and obj.dtype in real and obj.layout is strided:
        if obj.is_cpu:
            return ON_HOST
        return 0 if obj.is_meta else ON_DEVICE  # a meta tensor holds no value to copy
    return 0


def cpu_scalar(obj: Any) -> bool:
    """True for a plain one-element, real, strided torch tensor on the CPU, whose ``.item()`` waits for nothing."""
    return scalar_place(obj) == ON_HOST


def _describe(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _reason(exc: BaseException) -> str:
    """An exception as text, even one whose ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def key_text(key: Any) -> str:
    """A printable name for any key, for warnings: never raises, lone surrogates escaped, at most 200 chars."""
    try:
        text = key if isinstance(key, str) else repr(key)
        text = str.__str__(text)
    except Exception:
        text = f"<a {_describe(key)} key whose repr() raises>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 200 else text[:197] + "..."


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def log_key(key: Any, prefix: str) -> str | None:
    """``key`` as a log() key (a str that is valid UTF-8); None, after one warning naming it, if it is not one."""
    if isinstance(key, str):
        text = key if type(key) is str else str.__str__(key)
        if _utf8(text):
            return text
        reason = "it holds a lone surrogate (not valid UTF-8)"
    else:
        reason = f"keys must be str, not {_describe(key)} (join the parts, such as 'layer/1')"
    name = prefix + key_text(key)
    warn_once(
        ("bad-key", name),
        f"trackio_shim: key {name!r}: {reason}; that key was dropped, the rest of this call is kept",
    )
    return None


def _warn_dropped(name: str, reason: str) -> None:
    warn_once(
        ("dropped", name, reason),
        f"trackio_shim: key {name!r}: {reason}; that key was dropped, the rest of this call is kept",
    )


def clean_log(data: Mapping[Any, Any]) -> dict[str, Any]:
    """One log() call with every key a usable str and no dict deeper than MAX_DEPTH or holding itself.

    Values other than dicts are kept as given (rich values and tensors are for trackio_shim.media.prepare);
    whatever is dropped is named in a one-time warning. Never raises.
    """
    return _clean_tree(data, "", 0, set())


def _clean_tree(data: Mapping[Any, Any], prefix: str, depth: int, path: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    path.add(id(data))
    if type(data) is dict:
        # A plain dict's items cannot fail: an exception here was raised by a signal handler (a timeout helper)
        # and must reach the caller, not be taken for a broken mapping that drops the whole call.
        items = list(data.items())
    else:
        try:
            items = list(data.items())
        except Exception as exc:
            _warn_dropped(prefix.rstrip("/") or "<the call>", f"its items could not be read ({_reason(exc)})")
            items = []
    for key, value in items:
        # An ASCII str is valid UTF-8: checked without encoding it (the slow path cleans every key of a call of
        # tensors, where log_key's encode would be a third of a further tensor's budget).
        name = key if type(key) is str and key.isascii() else log_key(key, prefix)
        if name is None:
            continue
        if isinstance(value, dict):
            full = prefix + key_text(name)
            if id(value) in path:
                _warn_dropped(full, "the dict contains itself")
            elif depth + 1 >= MAX_DEPTH:
                _warn_dropped(full, f"dicts nest deeper than {MAX_DEPTH} levels")
            else:
                out[name] = _clean_tree(value, f"{full}/", depth + 1, path)
            continue
        if getattr(value, "is_meta", False) is True and type(value).__module__.startswith("torch"):
            _warn_dropped(prefix + key_text(name), "a tensor on the meta device holds no values")
            continue
        out[name] = value
    path.discard(id(data))
    return out


def json_friendly(value: Any, name: str = "config") -> Any:
    """Config, summary and table values as msgpack/JSON-friendly data: containers kept (str keys), unknown
    objects as their str(). Never raises: what cannot be converted is dropped with one warning naming it
    (``name`` is its key). Ints beyond 64 bits, which msgpack cannot carry, are kept as their decimal text.
    """
    out = _friendly(value, name, 0, set())
    return None if out is _DROP else out


def _friendly(value: Any, name: str, depth: int, path: set[int]) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        plain = int.__index__(value)
        if _INT_MIN <= plain < _INT_END:
            return plain
        _warn_value(name, "an int beyond 64 bits", "kept as its decimal text")
        try:
            return str(plain)
        except ValueError:  # past sys.get_int_max_str_digits()
            return f"<an int of {plain.bit_length()} bits>"
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        text = str.__str__(value)
        if _utf8(text):
            return text
        _warn_value(name, "a str with a lone surrogate", "kept with the surrogate escaped")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    is_map = isinstance(value, Mapping)
    if is_map or isinstance(value, (list, tuple, set, frozenset)):
        if id(value) in path:
            _warn_value(name, "a container that contains itself", "dropped")
            return _DROP
        if depth + 1 >= MAX_DEPTH:
            _warn_value(name, f"containers nested deeper than {MAX_DEPTH} levels", "dropped")
            return _DROP
        path.add(id(value))
        try:
            return (
                _friendly_map(value, name, depth + 1, path) if is_map else _friendly_list(value, name, depth + 1, path)
            )
        finally:
            path.discard(id(value))
    first: Exception | None = None
    try:
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            return _friendly(value.item(), name, depth + 1, path)
        if hasattr(value, "tolist"):
            return _friendly(value.tolist(), name, depth + 1, path)
    except Exception as exc:  # a tensor on the meta device, a broken array-like: fall back to its text
        first = exc
    for text_of in (str, repr):
        try:
            return str.__str__(text_of(value))
        except Exception as exc:
            first = first or exc
    _warn_value(name, f"a {_describe(value)} whose str() raises ({_reason(first) if first else '?'})", "dropped")
    return _DROP


def _friendly_map(value: Mapping[Any, Any], name: str, depth: int, path: set[int]) -> dict[str, Any]:
    """``value``'s items with str keys, each converted at ``depth``; what cannot be converted is left out."""
    out: dict[str, Any] = {}
    try:
        items = list(value.items())
    except Exception as exc:
        _warn_value(name, f"a mapping whose items() raises ({_reason(exc)})", "dropped")
        return out
    for key, item in items:
        text = config_key(key, name)
        if text is None:
            continue
        converted = _friendly(item, f"{name}/{text}", depth, path)
        if converted is not _DROP:
            out[text] = converted
    return out


def _friendly_list(value: Any, name: str, depth: int, path: set[int]) -> list[Any]:
    out: list[Any] = []
    try:
        items = list(value)
    except Exception as exc:
        _warn_value(name, f"a container whose iteration raises ({_reason(exc)})", "dropped")
        return out
    for i, item in enumerate(items):
        converted = _friendly(item, f"{name}[{i}]", depth, path)
        if converted is not _DROP:
            out.append(converted)
    return out


def friendly_items(items: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """A config update or summary update as str keys to wire-friendly values; what cannot be converted is
    left out, after one warning naming it (``where`` is "config" or "summary"). Never raises."""
    return _friendly_map(items, where, 0, set())


def config_key(key: Any, where: str = "config") -> str | None:
    """A config or summary key as str: non-str keys by their str() (as wandb does); None, after a warning, for
    a key whose str() raises. Lone surrogates are escaped."""
    if isinstance(key, str):
        text = str.__str__(key)
    else:
        try:
            text = str.__str__(str(key))
        except Exception as exc:
            warn_once(
                ("config-key", where, type(key)),
                f"trackio_shim: {where}: a {_describe(key)} key whose str() raises ({_reason(exc)}) was dropped; "
                "the rest was kept",
            )
            return None
    if not _utf8(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        _warn_value(f"{where}/{text}", "a key with a lone surrogate", "kept with the surrogate escaped")
    return text


def _warn_value(name: str, what: str, outcome: str) -> None:
    shown = key_text(name)
    warn_once(
        ("value", shown, what),
        f"trackio_shim: {shown!r}: {what}; {outcome}, the rest was kept",
    )


def _clean(data: dict[Any, Any], packer: msgpack.Packer, prefix: str, budget: int, depth: int) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in list(data.items()):
        text = log_key(key, prefix)
        if text is None:
            continue
        name = f"{prefix}{text}"
        if isinstance(value, dict):
            if depth + 1 >= MAX_DEPTH:
                _warn_dropped(name, f"dicts nest deeper than {MAX_DEPTH} levels")
            else:
                out[text] = _clean(value, packer, f"{name}/", budget, depth + 1)
            continue
        try:
            size = len(packer.pack(value))
        except Exception as exc:
            reason = _reason(exc)
            warn_once(
                ("unsupported", name, type(value)),
                f"trackio_shim: key {key_text(name)!r}: {_describe(value)} cannot be logged ({reason}); "
                "log a number, bool or str (the rest of this call is kept)",
            )
            continue
        if size > budget:
            warn_once(
                ("too-big", name),
                f"trackio_shim: key {key_text(name)!r}: value of {size} bytes is over the frame limit of {budget} "
                "bytes (TRACKIOD_MAX_FRAME_BYTES); it was dropped, the rest of this call is kept",
            )
            continue
        out[text] = value
    return out


def salvage(packer: msgpack.Packer, message: list[Any], max_frame: int) -> bytes | None:
    """Pack ``message`` after dropping (with a one-time warning) the values that cannot be sent.

    Every dict among the fields after ``[kind, sid, seq]`` (a LOG's data, a CONFIG's or SUMMARY's items, a
    LOG_CONTEXT's data and context) is cleaned key by key. Returns None when nothing sendable is left or the
    message is still over ``max_frame`` bytes. Never raises.
    """
    fields = [_clean(field, packer, "", max_frame, 0) if isinstance(field, dict) else field for field in message[3:]]
    try:
        frame: bytes = packer.pack([*message[:3], *fields])
    except Exception as exc:
        warn_once(
            ("unpackable", type(exc)), f"trackio_shim: a call could not be encoded and was dropped: {_reason(exc)}"
        )
        return None
    if len(frame) > max_frame:
        warn_once(
            "frame-too-big",
            f"trackio_shim: one call encodes to {len(frame)} bytes, over the frame limit of {max_frame}; "
            "it was dropped (split it across several log() calls)",
        )
        return None
    return frame
