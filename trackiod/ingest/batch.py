"""Points waiting for the next commit, held column-wise so a flush writes whole arrays.

A LOG frame costs the ingest loop a few list appends: its values are appended, flat, to the group of frames
with the same keys in the same run. At flush each group becomes one numpy array reshaped to a row per frame;
numeric groups (the common case) are split into columns without touching values one by one. Anything else
takes the slow path, which flattens nested dicts and sorts values into numbers, texts and rejects.

Values are kept flat rather than as a tuple per frame: a tuple is one more allocation per frame, and a
batch of 250,000 of them kept the garbage collector busy (docs/benchmarks.md, "round 4: ingest"), while
``np.array`` of a flat list of floats converts about twice as fast as a list of tuples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trackiod.store.series_key import SeriesKey

MAX_KEY_CHARS = 512
MAX_DEPTH = 32
RESERVED_KEYS = frozenset({"_step", "_timestamp", "_runtime"})


def check_key(name: Any, top_level: bool = True) -> tuple[str | None, str | None]:
    """``(name, None)`` for a usable metric name, else ``(None, reason)``.

    ``top_level`` False is for a nested dict's keys: "a/_step" is no history column, so it is not reserved.
    """
    if not isinstance(name, str):
        if isinstance(name, (int, float, bool)):
            name = str(name)
        else:
            return None, f"metric names must be strings, not {type(name).__name__}"
    if not name or len(name) > MAX_KEY_CHARS:
        return None, f"metric names must be 1 to {MAX_KEY_CHARS} characters long"
    if top_level and name in RESERVED_KEYS:
        return None, f"{name!r} is reserved for the history's own columns; rename the key"
    if "\x00" in name:
        return None, "metric names cannot contain NUL characters"
    return name, None


@dataclass
class Group:
    """Frames of one run that logged the same keys, as parallel lists; ``values`` holds ``width`` per frame.

    Appended to by :class:`Batch` and, for runs of plain LOG frames, by the ingest loop directly
    (:meth:`Batch.group` and :meth:`Batch.took`), which saves a method call and an arrival number per frame.
    """

    width: int
    arrivals: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def rows(self) -> list[tuple[Any, ...]]:
        """The values frame by frame (the slow path's view)."""
        width, values = self.width, self.values
        if width == 0:
            return [()] * len(self.steps)
        return [tuple(values[i : i + width]) for i in range(0, len(values), width)]


@dataclass
class SeriesParts:
    """Everything one series received in this batch, possibly from several groups."""

    arrivals: list[np.ndarray] = field(default_factory=list)
    steps: list[np.ndarray] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)

    def add(self, arrivals: np.ndarray, steps: np.ndarray, times: np.ndarray, vals: np.ndarray) -> None:
        self.arrivals.append(arrivals)
        self.steps.append(steps)
        self.times.append(times)
        self.vals.append(vals)

    def last_arrival(self) -> int:
        """The arrival number of the series' last value in this batch."""
        return max(int(arrivals.max()) for arrivals in self.arrivals)

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps, times and values in arrival order (so a later value for a step wins on read)."""
        if len(self.vals) == 1:
            return self.steps[0], self.times[0], self.vals[0]
        order = np.argsort(np.concatenate(self.arrivals), kind="stable")
        return (
            np.concatenate(self.steps)[order],
            np.concatenate(self.times)[order],
            np.concatenate(self.vals)[order],
        )


@dataclass
class Columns:
    """What a flush writes: numeric series, text values ``(series, step, ts, value)``, and the rejects to report."""

    series: dict[SeriesKey, SeriesParts] = field(default_factory=dict)
    texts: list[tuple[SeriesKey, int, float, str]] = field(default_factory=list)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (run_id, key, reason)
    #: The arrival number of each text series' last value in this batch (summaries need the order).
    text_arrivals: dict[SeriesKey, int] = field(default_factory=dict)


#: A group of frames: ``(run_id, keys, context_id, rank)``; context and rank None for a plain LOG frame.
GroupKey = tuple[int, tuple[Any, ...], "int | None", "int | None"]


class Batch:
    """The open batch: LOG rows grouped by (run, keys, context, rank)."""

    def __init__(self) -> None:
        self.groups: dict[GroupKey, Group] = {}
        self.points = 0
        self.frames = 0
        self._arrival = 0

    def add(self, run_id: int, step: int, ts: float, data: dict[Any, Any]) -> None:
        # A plain LOG frame: :meth:`_add_to`'s body inline, saving a call per frame.
        keys = tuple(data)
        group_key = (run_id, keys, None, None)
        group = self.groups.get(group_key)
        if group is None:
            group = self.groups[group_key] = Group(len(keys))
        self._arrival += 1
        group.arrivals.append(self._arrival)
        group.steps.append(step)
        group.times.append(ts)
        group.values.extend(data.values())
        self.points += len(keys)
        self.frames += 1

    @property
    def arrival(self) -> int:
        """The arrival number of the last frame added: what came after it in this batch has a larger one."""
        return self._arrival

    def group(self, run_id: int, keys: tuple[Any, ...]) -> Group:
        """The group of plain LOG frames of ``run_id`` with ``keys``, for a caller that appends frames to it itself
        (each frame's step, time and values) and then counts them with :meth:`took`."""
        group_key = (run_id, keys, None, None)
        group = self.groups.get(group_key)
        if group is None:
            group = self.groups[group_key] = Group(len(keys))
        return group

    def took(self, group: Group, frames: int) -> None:
        """Count the last ``frames`` frames a caller appended to ``group`` (see :meth:`group`): they arrived in
        that order, after every frame before them, which numbers them in one C call instead of one per frame."""
        group.arrivals.extend(range(self._arrival + 1, self._arrival + frames + 1))
        self._arrival += frames
        self.frames += frames
        self.points += frames * group.width

    def add_context(self, run_id: int, context_id: int, step: int, ts: float, data: dict[Any, Any]) -> None:
        """Like :meth:`add`, for a LOG_CONTEXT frame: its series are ``(key, context)`` pairs."""
        self._add_to((run_id, tuple(data), context_id, None), step, ts, data)

    def add_rank(
        self, run_id: int, rank: int, step: int, ts: float, data: dict[Any, Any], context_id: int | None = None
    ) -> None:
        """Like :meth:`add` (or :meth:`add_context`) for a frame from rank ``rank`` > 0 of a distributed run."""
        self._add_to((run_id, tuple(data), context_id, rank), step, ts, data)

    def _add_to(self, group_key: GroupKey, step: int, ts: float, data: dict[Any, Any]) -> None:
        """Append one frame's row to the group ``group_key``."""
        group = self.groups.get(group_key)
        if group is None:
            group = self.groups[group_key] = Group(len(group_key[1]))
        self._arrival += 1
        group.arrivals.append(self._arrival)
        group.steps.append(step)
        group.times.append(ts)
        group.values.extend(data.values())
        self.points += len(data)
        self.frames += 1

    def __bool__(self) -> bool:
        return bool(self.groups)

    def columns(self) -> Columns:
        """Split every group into per-series arrays; the batch is empty afterwards."""
        out = Columns()
        for (run_id, keys, context_id, rank), group in self.groups.items():
            arrivals = np.asarray(group.arrivals, np.int64)
            steps = np.asarray(group.steps, np.int64)
            times = np.asarray(group.times, np.float64)
            names = [check_key(k) for k in keys]
            matrix = _numeric_matrix(group.values, len(keys))
            if matrix is not None and all(name is not None for name, _ in names):
                for j, (name, _) in enumerate(names):
                    assert name is not None
                    _parts(out, SeriesKey(run_id, name, context_id, rank)).add(arrivals, steps, times, matrix[:, j])
            else:
                _slow_path(out, SeriesKey(run_id, "", context_id, rank), keys, group)
        self.groups.clear()
        self.points = self.frames = 0
        return out


def _parts(out: Columns, key: SeriesKey) -> SeriesParts:
    parts = out.series.get(key)
    if parts is None:
        parts = out.series[key] = SeriesParts()
    return parts


def _numeric_matrix(values: list[Any], width: int) -> np.ndarray | None:
    """The flat ``values`` as a float64 matrix of ``width`` columns, or None if any value is not a plain number."""
    if width == 0:
        return None
    try:
        flat = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return None
    # dtype kinds: bool, signed, unsigned, float. Strings ("U") and objects (nested dicts, lists: a list value
    # would also add a dimension) fall to the slow path, which also keeps a numeric-looking string such as
    # "1.5" a text value.
    if flat.dtype.kind not in "biuf" or flat.ndim != 1:
        return None
    return flat.astype(np.float64, copy=False).reshape(-1, width)


def _slow_path(out: Columns, template: SeriesKey, keys: tuple[Any, ...], group: Group) -> None:
    """Flatten and sort one group value by value; ``template`` is the group's series key without a name."""
    run_id = template.run_id
    numeric: dict[str, tuple[list[int], list[int], list[float], list[float]]] = {}
    for arrival, step, ts, row in zip(group.arrivals, group.steps, group.times, group.rows()):
        for name, value in flatten(dict(zip(keys, row)), out, run_id):
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, (int, float)):
                try:
                    number = float(value)
                except OverflowError:
                    number = math.inf if value > 0 else -math.inf
                cols = numeric.setdefault(name, ([], [], [], []))
                cols[0].append(arrival)
                cols[1].append(step)
                cols[2].append(ts)
                cols[3].append(number)
            elif isinstance(value, str):
                text_key = template._replace(name=name)
                out.texts.append((text_key, step, ts, value))
                out.text_arrivals[text_key] = arrival
            elif value is not None:
                out.rejects.append(
                    (
                        run_id,
                        name,
                        f"values of type {type(value).__name__} are not supported; log a number or str",
                    )
                )
    for name, (arrivals, steps, times, vals) in numeric.items():
        _parts(out, template._replace(name=name)).add(
            np.asarray(arrivals, np.int64),
            np.asarray(steps, np.int64),
            np.asarray(times, np.float64),
            np.asarray(vals, np.float64),
        )


def flatten(data: dict[Any, Any], out: Columns, run_id: int, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Nested dicts as ``("a/b", value)`` pairs; bad names and too-deep nesting become rejects."""
    pairs: list[tuple[str, Any]] = []
    for raw_key, value in data.items():
        name, reason = check_key(raw_key, top_level=not prefix)
        if name is None:
            out.rejects.append((run_id, f"{prefix}{str(raw_key)[:80]}", str(reason)))
            continue
        full = prefix + name
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                out.rejects.append((run_id, full[:200], f"nested deeper than {MAX_DEPTH} levels"))
                continue
            pairs.extend(flatten(value, out, run_id, full + "/", depth + 1))
        else:
            pairs.append((full, value))
    return pairs
