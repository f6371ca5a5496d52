"""``sync_tensorboard``: the daemon reads what a run's SummaryWriters write, as they write it.

The training process only names a directory (a TENSORBOARD frame, sent when a SummaryWriter opens it); the
reading happens here, off the training loop. The writer thread stores the watch; a worker thread reads the
event files directly in that directory every maintenance tick, from where it stopped last time
(:func:`trackio_shim.event_files.read_records`), and decodes them as the importer does
(:class:`~trackio_shim.event_files.EventDecoder`). The writer then adds the values to the open batch like a LOG
(scalars, text) or a MEDIA frame (histograms, images), at the event's own step and wall time; the hparams
plugin's values are merged into the run's config.

A watch ends :data:`GRACE_S` after its run ended (a writer flushed at the very end is still read). The watches
and how far each file was read are saved, after each commit that changed them, in ``tensorboard_watches.json``
in the data directory, so a restarted daemon carries on where the last commit left off (a read whose commit
was lost is read again: a series keeps the last value of a step, media one value per step).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackio_shim import event_files
from trackio_shim.errors import FrameRejected, UsageError
from trackiod.ingest.guard import is_time
from trackiod.ingest.ingest import Ingest
from trackiod.ingest.outbox import Worker
from trackiod.ingest.ranks import merge_config

log = logging.getLogger("trackiod.tensorboard")

#: Seconds a watch goes on reading after its run ended.
GRACE_S = 3.0
#: How much older than the writer's opening a file's mtime may be and still be the writer's (2 s: FAT, SMB).
MTIME_SLACK_S = 2.0
MAX_PREFIX_CHARS = 200


@dataclass
class Result:
    """What one read of one watch found, for the writer."""

    run_id: int
    logdir: Path
    events: list[event_files.Decoded]
    hparams: dict[str, Any]
    #: Where each file's reading stopped, once this result is committed.
    offsets: dict[str, int]


@dataclass
class Watch:
    """One directory of one run, and how far each of its event files was read (worker thread only)."""

    run_id: int
    logdir: Path
    prefix: str
    #: When the writer opened the directory: files last changed before then belong to earlier runs.
    since: float = 0.0
    offsets: dict[Path, int] = field(default_factory=dict)
    decoders: dict[Path, event_files.EventDecoder] = field(default_factory=dict)
    #: Files not read: damaged, unreadable, or an earlier run's.
    ignored: set[Path] = field(default_factory=set)
    #: Reasons for skipping values already logged (once per watch).
    told: set[str] = field(default_factory=set)

    def read(self) -> Result | None:
        found: list[event_files.Decoded] = []
        hparams: dict[str, Any] = {}
        for path in event_files.event_files(self.logdir):
            if path in self.ignored:
                continue
            if path not in self.offsets and not self._ours(path):
                self.ignored.add(path)
                log.info("run %d: not reading %s, last written before the run opened its directory", self.run_id, path)
                continue
            decoder = self.decoders.get(path)
            if decoder is None:
                decoder = self.decoders[path] = event_files.EventDecoder(self.prefix)
            try:
                records, self.offsets[path] = event_files.read_records(path, self.offsets.get(path, 0))
            except (OSError, UsageError) as exc:
                log.warning("run %d: stopped reading %s: %s", self.run_id, path, exc)
                self.ignored.add(path)
                continue
            for record in records:
                decoded = decoder.decode(record)
                if decoded is not None:
                    found.append(decoded)
            if decoder.hparams:
                hparams.update(decoder.hparams)
                decoder.hparams.clear()
            for reason in sorted(decoder.skipped.keys() - self.told):
                self.told.add(reason)
                tags = ", ".join(sorted(decoder.skipped[reason]))
                log.info("run %d, %s: not stored: %s (%s)", self.run_id, path.name, reason, tags)
        if not found and not hparams:
            return None
        offsets = {str(path): offset for path, offset in self.offsets.items()}
        return Result(self.run_id, self.logdir, found, hparams, offsets)

    def _ours(self, path: Path) -> bool:
        """Written since the run's writer opened the directory (a file system's coarse mtime is allowed for)."""
        try:
            return path.stat().st_mtime >= self.since - MTIME_SLACK_S
        except OSError:
            return False


class TensorBoardSync:
    """The writer's side (watches, writing what was read) and the worker's side (reading) of sync_tensorboard."""

    def __init__(self, worker: Worker, state_path: Path) -> None:
        """``state_path``: where the watches and their offsets are saved (see the module docstring)."""
        self.worker = worker
        self.state_path = state_path
        # Writer thread: watches of the open transaction; the runs followed, with when each was seen ended; the
        # committed state, as saved: (run, logdir) -> {"prefix", "offsets"}.
        self._new: list[Watch] = []
        self._runs: dict[int, float | None] = {}
        self._in_txn: list[Result] = []
        self._saved: dict[tuple[int, str], dict[str, Any]] = {}
        # Worker to writer: what the reads found (deque appends and pops are atomic).
        self._results: deque[Result] = deque()
        # Worker thread: the watches, by (run, directory).
        self._watches: dict[tuple[int, Path], Watch] = {}
        self._scan_queued = threading.Event()

    # ------------------------------------------------------------------ writer thread
    def add(self, store: Any, run_id: int, spec: dict[str, Any]) -> None:
        """Follow a directory for a run (a TENSORBOARD frame, inside the open transaction).

        Raises:
            FrameRejected: the directory is not an absolute path, the prefix is not a short string, or this
                daemon cannot read event files (no tensorboard package).
        """
        logdir, prefix, since = spec.get("logdir"), spec.get("prefix", ""), spec.get("since", 0.0)
        if not isinstance(logdir, str) or not Path(logdir).is_absolute():
            raise FrameRejected(f"TENSORBOARD needs an absolute logdir, not {logdir!r}")
        if not isinstance(prefix, str) or len(prefix) > MAX_PREFIX_CHARS:
            raise FrameRejected(f"TENSORBOARD prefix must be a string of at most {MAX_PREFIX_CHARS} characters")
        if not is_time(since):
            raise FrameRejected(f"TENSORBOARD since must be a finite time in seconds, not {since!r}")
        try:
            event_files.EventDecoder()
        except UsageError as exc:
            raise FrameRejected(f"sync_tensorboard: this daemon cannot read event files ({exc})") from None
        self._new.append(Watch(run_id, Path(logdir), prefix, float(since)))

    def committed(self) -> None:
        changed = bool(self._new or self._in_txn)
        for watch in self._new:
            self._runs.setdefault(watch.run_id, None)
            fresh = {"prefix": watch.prefix, "since": watch.since, "offsets": {}}
            self._saved.setdefault((watch.run_id, str(watch.logdir)), fresh)
            self.worker.submit(functools.partial(self._follow, watch))
        for result in self._in_txn:
            entry = self._saved.get((result.run_id, str(result.logdir)))
            if entry is not None:
                entry["offsets"] = result.offsets
        self._new.clear()
        self._in_txn.clear()
        if changed:
            self._save()

    def resume(self) -> None:
        """At daemon start: follow the directories a previous daemon followed, from where its last commit left."""
        try:
            saved = json.loads(self.state_path.read_text())
            entries = [
                (int(e["run_id"]), str(e["logdir"]), str(e["prefix"]), float(e["since"]), dict(e["offsets"]))
                for e in saved
            ]
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning(
                "%s is unreadable (%s): TensorBoard directories of earlier runs are not followed", self.state_path, exc
            )
            return
        for run_id, logdir, prefix, since, offsets in entries:
            self._runs.setdefault(run_id, None)
            self._saved[(run_id, logdir)] = {"prefix": prefix, "since": since, "offsets": offsets}
            watch = Watch(run_id, Path(logdir), prefix, since, {Path(k): int(v) for k, v in offsets.items()})
            self.worker.submit(functools.partial(self._follow, watch))
        if entries:
            log.info("following %d TensorBoard directories of earlier runs", len(entries))

    def _save(self) -> None:
        entries = [
            {"run_id": run_id, "logdir": logdir, **entry} for (run_id, logdir), entry in sorted(self._saved.items())
        ]
        partial = self.state_path.with_name(f".{self.state_path.name}.partial")
        try:
            partial.write_text(json.dumps(entries))
            os.replace(partial, self.state_path)
        except OSError as exc:  # a restart would then read some values again; nothing is lost
            log.warning("could not save %s: %s", self.state_path, exc)

    def rolled_back(self) -> None:
        self._new.clear()
        self._results.extendleft(reversed(self._in_txn))
        self._in_txn.clear()

    def mark(self) -> object:
        return len(self._new)

    def undo_to(self, mark: object) -> None:
        assert isinstance(mark, int)
        del self._new[mark:]

    def tick(self, store: Any) -> None:
        """Every maintenance tick: read the watched directories; drop the watches of runs ended long enough."""
        if not self._runs:
            return
        now = time.monotonic()
        for run_id, ended in list(self._runs.items()):
            row = store.run(run_id)
            if row is None or row["state"] != "running":
                if ended is None:
                    self._runs[run_id] = now
                elif now - ended > GRACE_S:
                    del self._runs[run_id]
                    for key in [k for k in self._saved if k[0] == run_id]:
                        del self._saved[key]
                    self._save()
                    self.worker.submit(functools.partial(self._forget, run_id))
        if not self._scan_queued.is_set():
            self._scan_queued.set()
            self.worker.submit(self._scan)

    @property
    def ready(self) -> bool:
        """The reads found something for the writer."""
        return bool(self._results)

    def write(self, ingest: Ingest) -> None:
        """Add what the reads found to ingest's open transaction (writer thread)."""
        while self._results:
            result = self._results.popleft()
            self._in_txn.append(result)
            try:
                self._write_one(ingest, result)
            except Exception:  # one bad read must not stop the others, nor the daemon
                log.exception("run %d: TensorBoard values could not be written", result.run_id)

    @staticmethod
    def _write_one(ingest: Ingest, result: Result) -> None:
        run_id = result.run_id
        for event in result.events:
            if event.scalars:
                ingest.batch.add(run_id, event.step, event.wall_time, event.scalars)
                ingest.counters.points += len(event.scalars)
            if event.media:
                rejects = ingest.media.add(run_id, event.step, event.wall_time, event.media)
                for key, reason in rejects:
                    log.warning("run %d: TensorBoard value %r not stored: %s", run_id, key, reason)
                if len(rejects) < len(event.media):
                    ingest.runs.saw_step(run_id, event.step)
        if result.hparams:
            row = ingest.store.run(run_id)
            if row is not None:
                merged, _ = merge_config(json.loads(row["config"]), result.hparams, may_change=True)
                ingest.store.update_run(run_id, config=json.dumps(merged, default=str), updated_at=time.time())

    # ------------------------------------------------------------------ worker thread
    def _scan(self) -> None:
        try:
            for watch in list(self._watches.values()):
                result = watch.read()
                if result is not None:
                    self._results.append(result)
        finally:
            self._scan_queued.clear()

    def _follow(self, watch: Watch) -> None:
        self._watches.setdefault((watch.run_id, watch.logdir), watch)

    def _forget(self, run_id: int) -> None:
        for key in [k for k in self._watches if k[0] == run_id]:
            del self._watches[key]

    def stop(self, timeout: float) -> bool:
        return self.worker.stop(timeout)

    def status(self) -> dict[str, Any]:
        return {"tensorboard_runs": len(self._runs)}
