"""All or nothing for one frame, and the checks that keep a frame's bad values from surfacing at the commit.

A sequenced frame is applied inside the batch's open transaction, next to other sessions' frames. If applying
it raises halfway, :meth:`FrameGuard.undo` puts back the database (a savepoint), the run book, the name caches,
the media files it wrote and the background queues, so the batch commits as if the frame had never arrived and
its sender gets one NOTICE naming what was wrong. LOG and LOG_CONTEXT frames take no savepoint (they are the
hot path): they are checked before anything changes and then only append to the in-memory batch, whose values
are checked key by key at the commit (a bad key is named and the rest of the call is kept, docs/robustness.md).

Values that are only serialised at the commit (summary entries, metric definitions) are checked when the frame
is applied, by :func:`check_plain` and :func:`check_metric_spec`: a commit must never fail on input.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import apsw

from trackio_shim.rules import GOALS, SUMMARY_KINDS

#: Deepest nesting kept in config and summary values (wandb configs are a few levels deep).
MAX_VALUE_DEPTH = 64
#: SQLite errors that a frame's content can cause; any other (disk full, I/O, corruption) is the environment's.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    apsw.ConstraintError,
    apsw.TooBigError,
    apsw.MismatchError,
    apsw.RangeError,
)
_RUN_STATE = ("handles", "rejected", "run_sids", "ranks", "dirty", "last_steps", "_finished", "summaries")


def caused_by_input(exc: BaseException) -> bool:
    """Whether applying a frame failed because of what the frame holds (not because the disk or database did)."""
    return isinstance(exc, INPUT_ERRORS) or not isinstance(exc, apsw.Error)


class FrameGuard:
    """Marks taken before one frame is applied; :meth:`release` keeps its effects, :meth:`undo` drops them."""

    def __init__(self, ingest: Any) -> None:
        self.ingest = ingest
        ingest.store.conn.execute("SAVEPOINT frame")
        self._commits = ingest.counters.commits
        runs = ingest.runs
        # Shallow copies: these hold ids and small records; RunSummary objects change only by replacement
        # or by one dict.update of an already checked dict, which cannot fail halfway.
        self._runs = {name: copy.copy(getattr(runs, name)) for name in _RUN_STATE}
        self._events = len(runs.events)
        self._media = (len(ingest.media._created), len(ingest.media._obsolete), ingest.media.written)
        self._points = ingest.counters.points
        features = ingest.features
        self._queues = _feature_queues(features)
        self._queue_marks = [len(q) for q in self._queues]

    def _open(self) -> bool:
        """Whether the frame's transaction is still open (a RUN_START that asks for a reply commits at once)."""
        return bool(self.ingest._in_txn) and self.ingest.counters.commits == self._commits

    def release(self) -> None:
        if self._open():
            self.ingest.store.conn.execute("RELEASE frame")

    def undo(self) -> None:
        """Drop everything the frame changed; the batch's earlier frames are untouched.

        A frame whose transaction already ended (committed, or rolled back by a failed commit) has nothing
        left to undo here: the commit made it whole, and a rollback reset everything itself.
        """
        if not self._open():
            return
        ingest = self.ingest
        conn = ingest.store.conn
        conn.execute("ROLLBACK TO frame")
        conn.execute("RELEASE frame")
        ingest.store.forget_names()  # ids of names inserted by this frame are gone; the rest are re-read
        runs = ingest.runs
        for name, value in self._runs.items():
            setattr(runs, name, value)
        del runs.events[self._events :]
        media = ingest.media
        created, obsolete, written = self._media
        for path in media._created[created:]:
            path.unlink(missing_ok=True)
        del media._created[created:]
        del media._obsolete[obsolete:]
        media.written = written
        ingest.counters.points = self._points
        for queue, mark in zip(self._queues, self._queue_marks):
            del queue[mark:]


def _feature_queues(features: Any) -> list[list[Any]]:
    """The lists of work that the background threads get after a commit (alerts, file watches, artifact jobs)."""
    if features is None:
        return []
    return [features.alerts._to_deliver, features.files._new, features.artifacts._new]


def is_step(value: Any) -> bool:
    """Whether ``value`` can be a step: an int that fits SQLite's INTEGER (and numpy's int64 at the commit)."""
    return type(value) is int and -(2**63) <= value < 2**63


def is_time(value: Any) -> bool:
    """Whether ``value`` can be a timestamp: a finite number (SQLite stores NaN as NULL, which no column allows)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def check_plain(value: Any, what: str) -> None:
    """Refuse a config or summary value that could not be stored as JSON.

    Raises:
        ValueError: a map key is not a string, or the value is nested deeper than MAX_VALUE_DEPTH; the text
            names the top-level key.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_VALUE_DEPTH:
                raise ValueError(f"{what} is nested deeper than {MAX_VALUE_DEPTH} levels")
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"{what} has a map key of type {type(key).__name__}; map keys must be strings")
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            if depth >= MAX_VALUE_DEPTH:
                raise ValueError(f"{what} is nested deeper than {MAX_VALUE_DEPTH} levels")
            stack.extend((inner, depth + 1) for inner in item)


def check_metric_spec(spec: dict[str, Any]) -> None:
    """Refuse a DEFINE_METRIC spec that the summary could not evaluate (the shim's define_metric checks the same).

    Raises:
        ValueError: naming the field that is wrong.
    """
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("define_metric: 'name' must be a non-empty string")
    kinds = spec.get("summary")
    known = isinstance(kinds, list) and all(isinstance(k, str) and k in SUMMARY_KINDS for k in kinds)
    if kinds is not None and not known:
        raise ValueError(
            f"define_metric({name[:80]!r}): 'summary' must be a list drawn from {', '.join(sorted(SUMMARY_KINDS))}"
        )
    if spec.get("goal") is not None and spec.get("goal") not in GOALS:
        raise ValueError(f"define_metric({name[:80]!r}): 'goal' must be 'minimize', 'maximize' or absent")
    step_metric = spec.get("step_metric")
    if step_metric is not None and not isinstance(step_metric, str):
        raise ValueError(f"define_metric({name[:80]!r}): 'step_metric' must be a string or absent")
    check_plain(spec, f"define_metric({name[:80]!r})")
