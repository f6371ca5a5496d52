"""All or nothing for one frame, and the checks that keep a frame's bad values from surfacing at the commit.

A sequenced frame is applied inside the batch's open transaction, next to other sessions' frames. Before it
is applied, :class:`FrameGuard` opens a savepoint and asks every participant that keeps uncommitted state
(the run book, the media writer, the counters, the attachments' queues) for a mark; if applying the frame
raises halfway, :meth:`FrameGuard.undo` rolls back to the savepoint and hands each participant its mark
back, so the batch commits as if the frame had never arrived. What a mark holds is each participant's own
business. LOG and LOG_CONTEXT frames take no savepoint (they are the hot path): they are checked before
anything changes and then only append to the in-memory batch, whose values are checked key by key at the
commit (a bad key is named and the rest of the call is kept, docs/robustness.md).

The checks raise :class:`~trackio_shim.errors.FrameRejected`: that, and nothing else raised while applying a
frame, is the sender's fault (trackiod.ingest.ingest counts it as malformed). Values that are only
serialised at the commit (summary entries, metric definitions) are checked when the frame is applied, by
:func:`check_plain` and :func:`check_metric_spec`: a commit must never fail on input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, BinaryIO, Protocol

import apsw
import msgpack

from trackio_shim import protocol as P
from trackio_shim.errors import FrameRejected
from trackio_shim.rules import GOALS, SUMMARY_KINDS
from trackiod.store.writer import Store

#: Deepest nesting kept in config and summary values (wandb configs are a few levels deep).
MAX_VALUE_DEPTH = 64
#: SQLite errors that a frame's content can cause; any other (disk full, I/O, corruption) is the environment's.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    apsw.ConstraintError,
    apsw.TooBigError,
    apsw.MismatchError,
    apsw.RangeError,
)


def caused_by_input(exc: BaseException) -> bool:
    """Whether applying a frame failed because of what the frame holds: a failed check, or SQLite refusing it.

    Anything else is either the environment's (disk, I/O: an apsw error not in INPUT_ERRORS) or a bug.
    """
    return isinstance(exc, (FrameRejected, *INPUT_ERRORS))


class Undoable(Protocol):
    """Something holding uncommitted state that one frame may change."""

    def mark(self) -> object:
        """A token for the current state, cheap to take (a length, a shallow copy)."""

    def undo_to(self, mark: object) -> None:
        """Put back the state ``mark`` was taken at, dropping what changed since."""


class FrameGuard:
    """A savepoint and a mark per participant, taken before one frame is applied.

    :meth:`release` keeps the frame's effects, :meth:`undo` drops them. Both are only valid while the
    transaction the frame started in is still open; the ingest knows (a RUN_START that asks for a reply
    commits at once, and a failed commit rolls back everything itself).
    """

    def __init__(self, store: Store, participants: Iterable[Undoable]) -> None:
        self.store = store
        self._savepoint = store.mark()
        self._marks = [(p, p.mark()) for p in participants]

    def release(self) -> None:
        self.store.release(self._savepoint)

    def undo(self) -> None:
        """Drop everything the frame changed; the batch's earlier frames are untouched."""
        self.store.undo_to(self._savepoint)
        for participant, mark in reversed(self._marks):
            participant.undo_to(mark)


def is_int64(value: Any) -> bool:
    """Whether ``value`` is an int (not a bool) that fits SQLite's INTEGER (and numpy's int64 at the commit)."""
    return type(value) is int and -(2**63) <= value < 2**63


#: Whether a value can be a step (an int64).
is_step = is_int64


def is_time(value: Any) -> bool:
    """Whether ``value`` can be a timestamp: a finite number (SQLite stores NaN as NULL, which no column allows)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def check_plain(value: Any, what: str) -> None:
    """Refuse a config or summary value that could not be stored as JSON.

    Raises:
        FrameRejected: a map key is not a string, or the value is nested deeper than MAX_VALUE_DEPTH; the
            text names the top-level key.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_VALUE_DEPTH:
                raise FrameRejected(f"{what} is nested deeper than {MAX_VALUE_DEPTH} levels")
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise FrameRejected(f"{what} has a map key of type {type(key).__name__}; map keys must be strings")
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            if depth >= MAX_VALUE_DEPTH:
                raise FrameRejected(f"{what} is nested deeper than {MAX_VALUE_DEPTH} levels")
            stack.extend((inner, depth + 1) for inner in item)


def check_metric_spec(spec: dict[str, Any]) -> None:
    """Refuse a DEFINE_METRIC spec that the summary could not evaluate (the shim's define_metric checks the same).

    Raises:
        FrameRejected: naming the field that is wrong.
    """
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise FrameRejected("define_metric: 'name' must be a non-empty string")
    kinds = spec.get("summary")
    known = isinstance(kinds, list) and all(isinstance(k, str) and k in SUMMARY_KINDS for k in kinds)
    if kinds is not None and not known:
        raise FrameRejected(
            f"define_metric({name[:80]!r}): 'summary' must be a list drawn from {', '.join(sorted(SUMMARY_KINDS))}"
        )
    if spec.get("goal") is not None and spec.get("goal") not in GOALS:
        raise FrameRejected(f"define_metric({name[:80]!r}): 'goal' must be 'minimize', 'maximize' or absent")
    step_metric = spec.get("step_metric")
    if step_metric is not None and not isinstance(step_metric, str):
        raise FrameRejected(f"define_metric({name[:80]!r}): 'step_metric' must be a string or absent")
    check_plain(spec, f"define_metric({name[:80]!r})")


# ---------------------------------------------------------------------------------------- undecodable frames
# A frame the strict decoder (trackio_shim.protocol.unpack) refuses is still one frame of one session. If its
# sequence number were dropped with it, every later frame of that session would be out of order and the whole
# rest of the process lost (issue 18, finding 1): so a refused frame is decoded again, leniently, and if even
# that fails its header alone is read, so that its sequence number is consumed (docs/robustness.md).


def _hashable(key: Any) -> Any:
    """A map key the strict decoder could not hash (an array or a map, as msgpack writes a Python tuple key),
    as a tuple: the frame then decodes, and the key is refused by name where keys are checked."""
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        return tuple((_hashable(k), _hashable(v)) for k, v in key.items())
    return key


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in pairs:
        try:
            out[key] = value
        except TypeError:
            out[_hashable(key)] = value
    return out


def _lenient_unpacker(limit: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        object_pairs_hook=_pairs,
        unicode_errors="replace",  # invalid UTF-8 (never sent by a shim) becomes U+FFFD, which SQLite can store
        max_buffer_size=max(limit, 1),
        max_str_len=limit,
        max_bin_len=limit,
        max_array_len=limit,
        max_map_len=limit,
        max_ext_len=limit,
    )


def decode_lenient(raw: bytes) -> Any | None:
    """``raw`` decoded with unhashable map keys as tuples and bad UTF-8 replaced; None if still undecodable.

    Only for frames the strict decoder refused: the hook it needs costs a Python call per map.
    """
    unpacker = _lenient_unpacker(len(raw))
    try:
        unpacker.feed(raw)
        msg = unpacker.unpack()
    except Exception:
        return None
    return msg if unpacker.tell() == len(raw) else None


def frame_header(raw: bytes) -> tuple[int, bytes, int] | None:
    """``(kind, session id, seq)`` of a sequenced frame whose body cannot be decoded; None if even those cannot."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(raw), 1), max_str_len=len(raw), max_bin_len=len(raw))
    try:
        unpacker.feed(raw)
        if unpacker.read_array_header() < 3:
            return None
        kind, sid, seq = unpacker.unpack(), unpacker.unpack(), unpacker.unpack()
    except Exception:
        return None
    return _sequenced_header(kind, sid, seq)


def message_header(msg: Any) -> tuple[int, bytes, int] | None:
    """``(kind, session id, seq)`` of a decoded message the frame checks refused; None if it has none."""
    if type(msg) is not list or len(msg) < 3:
        return None
    return _sequenced_header(msg[0], msg[1], msg[2])


def _sequenced_header(kind: Any, sid: Any, seq: Any) -> tuple[int, bytes, int] | None:
    if type(kind) is not int or kind not in P.SEQUENCED_KINDS:
        return None
    if not isinstance(sid, bytes) or len(sid) != P.SESSION_ID_BYTES or type(seq) is not int:
        return None
    return (kind, sid, seq) if 1 <= seq <= P.MAX_SEQ else None


def lenient_frame_at(stream: BinaryIO, offset: int, max_frame: int) -> tuple[Any, int] | None:
    """The frame of a spool file starting at ``offset`` that the strict decoder refused, decoded leniently,
    and the offset where the next frame starts; None if it cannot be decoded at all (the file is corrupt there).
    """
    limit = max(max_frame * 2, 1 << 20)
    unpacker = _lenient_unpacker(limit)
    stream.seek(offset)
    read = 0
    while read <= limit:
        block = stream.read(1 << 20)
        if not block:
            return None
        read += len(block)
        try:
            unpacker.feed(block)
            msg = unpacker.unpack()
        except msgpack.OutOfData:
            continue
        except Exception:
            return None
        return msg, offset + unpacker.tell()
    return None
