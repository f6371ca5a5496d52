"""The mirror thread: committed data in through a bounded queue, SDK calls out, never blocking the writer.

The writer calls :meth:`MirrorHub.offer` after each commit. It keeps only what belongs to mirrored runs and
appends it to a queue bounded in points (``mirror_queue_points``); when a mirror falls that far behind, the
overflow is counted as dropped for that mirror (the local database has it all) instead of making the writer
wait. The mirror thread opens each run's mirrors on its start event (or, after a daemon restart, on its first
data, reading the run from the database), writes batches, retries a failing mirror with backoff while
holding a bounded backlog for it, and closes mirrors when their run ends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from trackio_shim.errors import MirrorError
from trackio_shim.mirror_spec import MirrorSpec, parse_mirrors
from trackiod.ingest.batch import Columns
from trackiod.mirrors.base import Mirror, MirrorBatch, MirrorState, RunInfo, Series, create
from trackiod.store.series_key import SeriesKey

log = logging.getLogger("trackiod.mirrors")

#: Points a failing mirror holds for its retries; beyond that its oldest batches are dropped (and counted).
BACKLOG_POINTS = 200_000
_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_CLOSED_KEPT = 200

Events = list[tuple[str, int, Any]]


def _mirrored_series(key: SeriesKey) -> bool:
    """Whether a series reaches the mirrors: the run's own series do; context and rank > 0 series do not.

    The trackers mirrored to have no metric context (trackio's ``log(..., context=...)``) and one process per
    run, so a context series would either collide with the context-free series of its key or need a name
    invented for it; the mirrors get what a wandb run of rank 0 would have logged (docs/mirrors.md).
    """
    return key.context_id is None and key.rank is None


class MirrorSlot:
    """One mirror of one run, with its retry backlog and its status."""

    def __init__(self, mirror: Mirror, state: MirrorState) -> None:
        self.mirror = mirror
        self.state = state
        self.opened = False
        self.backlog: deque[MirrorBatch] = deque()
        self.retry_at = 0.0

    def write(self, batch: MirrorBatch, now: float) -> None:
        if self.state.state == "failed":
            self.state.dropped += batch.points
            return
        if batch.points:
            self.backlog.append(batch)
            self.state.pending += batch.points
        while self.state.pending > BACKLOG_POINTS and len(self.backlog) > 1:
            oldest = self.backlog.popleft()
            self.state.pending -= oldest.points
            self.state.dropped += oldest.points
        if now >= self.retry_at:
            self.flush(now)

    def flush(self, now: float) -> bool:
        """Open if needed and write the backlog; False (and a retry time set) if the mirror failed."""
        try:
            if not self.opened:
                self.mirror.open()
                self.opened = True
            while self.backlog:
                batch = self.backlog[0]
                self.mirror.write(batch)
                self.backlog.popleft()
                self.state.pending -= batch.points
                self.state.points += batch.points
        except MirrorError as exc:
            self._fail(exc, permanent=True)
            return False
        except Exception as exc:  # any SDK error: keep the batch, retry later
            self._fail(exc, permanent=False)
            self.retry_at = now + _BACKOFF_S[min(self.state.errors - 1, len(_BACKOFF_S) - 1)]
            return False
        self.state.state = "ok"
        return True

    def _fail(self, exc: BaseException, permanent: bool) -> None:
        self.state.errors += 1
        self.state.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if permanent:
            self.state.state = "failed"
            self.state.dropped += self.state.pending
            self.state.pending = 0
            self.backlog.clear()
        else:
            self.state.state = "failing"
        if self.state.errors <= 3 or self.state.errors % 100 == 0:
            log.warning("mirror %s of run %s: %s", self.state.spec, self.state.run, self.state.last_error)

    def update_config(self, items: dict[str, Any]) -> None:
        if self.opened and self.state.state != "failed":
            try:
                self.mirror.update_config(items)
            except Exception as exc:
                self._fail(exc, permanent=False)

    def close(self, run_state: str | None, now: float, last_try: bool = False) -> bool:
        """Write what is left and close; False while a failing mirror still holds a backlog to retry."""
        if self.state.state != "failed" and (self.backlog or not self.opened):
            if now < self.retry_at and not last_try:
                return False
            if not self.flush(now) and self.state.state == "failing" and not last_try:
                return False
        if self.opened:
            try:
                self.mirror.close(run_state)
            except Exception as exc:
                self._fail(exc, permanent=False)
        if self.state.pending:
            self.state.dropped += self.state.pending
            self.state.pending = 0
            self.backlog.clear()
            if last_try:
                self.state.state = "failed"
                self.state.last_error = f"gave up at daemon shutdown; last error: {self.state.last_error}"
        if self.state.state in ("ok", "starting"):
            self.state.state = "closed"
        return True


class MirrorHub:
    """The mirrors of every run, on one thread; see the module docstring."""

    def __init__(self, daemon_specs: list[MirrorSpec], db_path: Path, queue_points: int) -> None:
        self.daemon_specs = daemon_specs
        self.db_path = db_path
        self.queue_points = queue_points
        self.mirrored: set[int] = set()  # writer thread: runs with mirrors of their own
        self._cond = threading.Condition()
        self._queue: deque[tuple[Events, dict[int, MirrorBatch], dict[int, int]]] = deque()
        self._queued = 0
        self._stopping = False
        self.overflow_points = 0
        self._slots: dict[int, list[MirrorSlot]] = {}  # mirror thread only
        self._closed: deque[MirrorState] = deque(maxlen=_CLOSED_KEPT)
        self._closing: list[tuple[MirrorSlot, str | None]] = []  # run ended, backlog not written yet
        self._thread: threading.Thread | None = None
        self._reader: Any = None

    # ------------------------------------------------------------------ writer side
    def start(self, runs_with_mirrors: list[int]) -> None:
        """Start the thread; ``runs_with_mirrors`` are running runs that asked for mirrors before a restart."""
        self.mirrored.update(runs_with_mirrors)
        self._thread = threading.Thread(target=self._run, name="trackiod-mirrors", daemon=True)
        self._thread.start()

    def offer(self, events: Events, columns: Columns) -> None:
        """Queue what a commit made durable for the mirrored runs; returns at once, whatever the mirrors do."""
        for kind, run_id, body in events:
            if kind == "start" and body.get("mirrors"):
                self.mirrored.add(run_id)
        everything = bool(self.daemon_specs)
        if not everything and not self.mirrored:
            return
        mirrored = self.mirrored
        batches: dict[int, MirrorBatch] = {}
        for key, parts in columns.series.items():
            if (everything or key.run_id in mirrored) and _mirrored_series(key):
                steps, times, values = parts.merged()
                batches.setdefault(key.run_id, MirrorBatch()).series.append(Series(key.name, steps, times, values))
        for key, step, ts, value in columns.texts:
            if (everything or key.run_id in mirrored) and _mirrored_series(key):
                batches.setdefault(key.run_id, MirrorBatch()).texts.append((key.name, step, ts, value))
        picked = [e for e in events if everything or e[1] in mirrored]
        for kind, run_id, _ in events:
            if kind == "finish":
                self.mirrored.discard(run_id)
        if not picked and not batches:
            return
        points = sum(b.points for b in batches.values())
        overflow: dict[int, int] = {}
        with self._cond:
            if points and self._queued + points > self.queue_points:
                overflow = {run_id: batch.points for run_id, batch in batches.items()}
                self.overflow_points += points
                batches = {}
            else:
                self._queued += points
            self._queue.append((picked, batches, overflow))
            self._cond.notify()

    def close(self, timeout: float) -> bool:
        """Write what is queued, close every mirror (their runs go on; the daemon is stopping), stop the thread.

        True if the thread finished within ``timeout`` seconds.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "mirrors did not finish within %.0f s; what they had not written is in the database", timeout
                )
                return False
        return True

    def status(self) -> dict[str, Any]:
        """Every mirror's state (open ones and the most recently closed), and the queue's."""
        with self._cond:
            states = [slot.state.as_dict() for slots in self._slots.values() for slot in slots]
            states += [slot.state.as_dict() for slot, _ in self._closing]
            states += [s.as_dict() for s in self._closed]
            return {
                "daemon_mirrors": [str(s) for s in self.daemon_specs],
                "queued_points": self._queued,
                "queue_limit_points": self.queue_points,
                "overflow_points": self.overflow_points,
                "mirrors": states,
            }

    # ------------------------------------------------------------------ mirror thread
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(timeout=self._next_retry_in())
                items = list(self._queue)
                self._queue.clear()
                self._queued = 0
                stopping = self._stopping
            try:
                self._apply(items)
            except Exception as exc:  # the thread must outlive any mirror's bug
                log.exception("mirror thread: %s", exc)
            if stopping:
                self._shutdown()
                return

    def _next_retry_in(self) -> float:
        waits = [s.retry_at for slots in self._slots.values() for s in slots if s.backlog]
        waits += [s.retry_at for s, _ in self._closing]
        return max(0.05, min(waits) - time.monotonic()) if waits else 1.0

    def _apply(self, items: list[tuple[Events, dict[int, MirrorBatch], dict[int, int]]]) -> None:
        now = time.monotonic()
        for events, batches, overflow in items:
            finished: list[tuple[int, str]] = []
            for kind, run_id, body in events:
                if kind == "start":
                    self._open_run(run_id, body)
                elif kind == "config":
                    for slot in self._slots.get(run_id, []):
                        slot.update_config(body)
                elif kind == "finish":
                    finished.append((run_id, body))
            for run_id, batch in batches.items():
                for slot in self._slots_for(run_id):
                    slot.write(batch, now)
            for run_id, points in overflow.items():
                for slot in self._slots_for(run_id):
                    slot.state.dropped += points
            for run_id, run_state in finished:
                self._close_run(run_id, run_state, now)
        for slots in self._slots.values():
            for slot in slots:
                if slot.backlog and now >= slot.retry_at and slot.state.state != "failed":
                    slot.flush(now)
        for slot, ended in list(self._closing):
            if slot.close(ended, now):
                with self._cond:
                    self._closing.remove((slot, ended))
                    self._closed.append(slot.state)

    def _open_run(self, run_id: int, body: dict[str, Any]) -> None:
        if run_id in self._slots:  # resumed while open: the same mirrors go on
            return
        run = RunInfo(run_id, body["project"], body["run_key"], body["name"], dict(body.get("config") or {}))
        specs: list[tuple[MirrorSpec, str]] = [(s, "daemon") for s in self.daemon_specs]
        try:
            own = parse_mirrors(body.get("mirrors") or [], f"run {run.path}")
        except Exception as exc:  # checked by the shim; a hand-made frame may still carry junk
            log.warning("run %s: ignoring its mirrors: %s", run.path, exc)
            own = []
        specs += [(s, "run") for s in own if s not in self.daemon_specs]
        slots = []
        for spec, origin in specs:
            state = MirrorState(run.path, str(spec), origin)
            slots.append(MirrorSlot(create(spec, run, daemon_wide=origin == "daemon"), state))
            log.info("mirroring run %s to %s", run.path, spec)
        with self._cond:
            self._slots[run_id] = slots

    def _slots_for(self, run_id: int) -> list[MirrorSlot]:
        slots = self._slots.get(run_id)
        if slots is None:  # data for a run started before this daemon did
            body = self._read_run(run_id)
            if body is not None:
                self._open_run(run_id, body)
            with self._cond:
                slots = self._slots.setdefault(run_id, [])
        return slots

    def _read_run(self, run_id: int) -> dict[str, Any] | None:
        from trackiod.read.connection import open_reader

        try:
            if self._reader is None:
                self._reader = open_reader(self.db_path)
            row = self._reader.execute(
                "SELECT p.name, r.run_key, r.name, r.config, r.mirrors FROM runs r "
                "JOIN projects p ON p.id = r.project_id WHERE r.id=?",
                (run_id,),
            ).fetchone()
        except Exception as exc:
            log.warning("mirrors: could not read run %d from the database: %s", run_id, exc)
            return None
        if row is None:
            return None
        project, run_key, name, config, mirrors = row
        return {
            "project": project,
            "run_key": run_key,
            "name": name,
            "config": json.loads(config),
            "mirrors": json.loads(mirrors),
        }

    def _close_run(self, run_id: int, state: str | None, now: float, last_try: bool = False) -> None:
        slots = self._slots.get(run_id, [])
        done = [slot.close(state, now, last_try) for slot in slots]
        with self._cond:
            self._slots.pop(run_id, None)
            for slot, closed in zip(slots, done):
                if closed:
                    self._closed.append(slot.state)
                else:
                    self._closing.append((slot, state))

    def _shutdown(self) -> None:
        now = time.monotonic()
        for run_id in list(self._slots):
            self._close_run(run_id, None, now, last_try=True)
        for slot, state in self._closing:
            slot.close(state, now, last_try=True)
            self._closed.append(slot.state)
        self._closing.clear()
        if self._reader is not None:
            self._reader.close()
