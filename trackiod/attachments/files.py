"""``save()``: copying a run's files into its file store, once, at the end, or whenever they change.

The training process sends a SAVE_FILES frame with an absolute glob, its base directory and a policy. The
writer stores the watch (``file_watches``); the copying happens on a worker thread (:class:`FileKeeper`),
which reports each copy back to the writer through the outbox (``run_files``). Policies:
- ``now``: the files matching now are copied once;
- ``live``: copied now, then again whenever their size or mtime changes (checked every maintenance tick),
  and once more when the run ends; files that start matching later are picked up too;
- ``end``: copied when the run ends (finished, failed or crashed), within a maintenance tick.
The copy of a run's file ``name`` (its path relative to the base) is ``files/<project>/<run id>/<name>``.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trackio_shim.errors import FrameRejected
from trackio_shim.settings import TrackiodSettings
from trackiod.ingest.outbox import Outbox, Worker
from trackiod.store.blobs import copy_hashed

log = logging.getLogger("trackiod.files")

POLICIES = ("live", "now", "end")


@dataclass
class Watch:
    """One save() call of one run."""

    id: int
    run_id: int
    pattern: str
    base: str
    policy: str
    dest: Path


class FileKeeper:
    """The writer's side (storing watches) and the worker's side (globbing, copying) of save()."""

    def __init__(self, settings: TrackiodSettings, outbox: Outbox, worker: Worker) -> None:
        self.settings = settings
        self.outbox = outbox
        self.worker = worker
        self._new: list[Watch] = []
        # Worker-thread state: active watches and the (size, mtime) of each file's last copy.
        self._watches: dict[int, Watch] = {}
        self._copied: dict[tuple[int, str], tuple[int, float]] = {}
        self._scan_queued = False

    # ------------------------------------------------------------------ writer thread
    def add(self, store: Any, run_id: int, spec: dict[str, Any]) -> None:
        """Store a SAVE_FILES request inside the open transaction.

        Raises:
            FrameRejected: the policy is unknown, or the pattern or base is not an absolute path.
        """
        pattern, base, policy = spec.get("pattern"), spec.get("base"), spec.get("policy")
        if policy not in POLICIES:
            raise FrameRejected(f"save() policy {policy!r} is not one of {', '.join(POLICIES)}")
        if not isinstance(pattern, str) or not isinstance(base, str) or not (Path(pattern).is_absolute()):
            raise FrameRejected("SAVE_FILES needs an absolute pattern and base")
        store.conn.execute(
            "INSERT INTO file_watches(run_id, pattern, base, policy, active, created_at) VALUES (?, ?, ?, ?, 1, ?) "
            "ON CONFLICT(run_id, pattern, base, policy) DO UPDATE SET active=1",
            (run_id, pattern, base, policy, time.time()),
        )
        row = store.conn.execute(
            "SELECT id FROM file_watches WHERE run_id=? AND pattern=? AND base=? AND policy=?",
            (run_id, pattern, base, policy),
        ).fetchone()
        self._new.append(Watch(int(row[0]), run_id, pattern, base, policy, self._dest(store, run_id)))

    def _dest(self, store: Any, run_id: int) -> Path:
        project, run_key = store.conn.execute(
            "SELECT p.name, r.run_key FROM runs r JOIN projects p ON p.id = r.project_id WHERE r.id=?", (run_id,)
        ).fetchone()
        return Path(self.settings.files_dir / str(project) / str(run_key))

    def committed(self) -> None:
        for watch in self._new:
            self.worker.submit(functools.partial(self._start, watch))
        self._new.clear()

    def rolled_back(self) -> None:
        self._new.clear()

    def mark(self) -> object:
        """How many watches the open transaction has queued (a frame's undo drops those it added)."""
        return len(self._new)

    def undo_to(self, mark: object) -> None:
        assert isinstance(mark, int)
        del self._new[mark:]

    def resume(self, store: Any) -> None:
        """At daemon start: the active watches and what was already copied."""
        for wid, run_id, pattern, base, policy in store.conn.execute(
            "SELECT id, run_id, pattern, base, policy FROM file_watches WHERE active=1"
        ).fetchall():
            watch = Watch(wid, run_id, pattern, base, policy, self._dest(store, run_id))
            self.worker.submit(functools.partial(self._watches.__setitem__, watch.id, watch))
        copied = {
            (run_id, name): (size, mtime)
            for run_id, name, size, mtime in store.conn.execute("SELECT run_id, name, size, mtime FROM run_files")
        }
        self.worker.submit(lambda: self._copied.update(copied))

    def tick(self, store: Any) -> None:
        """Every maintenance tick: rescan live watches; final copies for runs that ended."""
        ended = [
            row[0]
            for row in store.conn.execute(
                "SELECT w.id FROM file_watches w JOIN runs r ON r.id = w.run_id "
                "WHERE w.active=1 AND r.state != 'running'"
            )
        ]
        if (ended or any(w.policy == "live" for w in list(self._watches.values()))) and not self._scan_queued:
            self._scan_queued = True
            self.worker.submit(lambda: self._scan(ended))

    # ------------------------------------------------------------------ worker thread
    def _start(self, watch: Watch) -> None:
        if watch.policy in ("now", "live"):
            self._copy_matching(watch)
        if watch.policy == "now":
            self.outbox.put(functools.partial(_deactivate, watch_id=watch.id))
        else:
            self._watches[watch.id] = watch

    def _scan(self, ended: list[int]) -> None:
        try:
            for watch in list(self._watches.values()):
                if watch.policy == "live" or watch.id in ended:
                    self._copy_matching(watch)
            for wid in ended:
                self._watches.pop(wid, None)
                self.outbox.put(functools.partial(_deactivate, watch_id=wid))
        finally:
            self._scan_queued = False

    def _copy_matching(self, watch: Watch) -> None:
        for path in sorted(glob.glob(watch.pattern, recursive=True)):
            if not os.path.isfile(path):
                continue
            name = os.path.relpath(path, watch.base)
            if name.startswith(".." + os.sep) or name == ".." or os.path.isabs(name):
                continue  # the shim refuses these; a file outside its base has no name in the run's store
            try:
                before = os.stat(path)
                mark = (before.st_size, before.st_mtime)
                if self._copied.get((watch.run_id, name)) == mark:
                    continue
                sha, size = copy_hashed(path, watch.dest / name)
                after = os.stat(path)
            except OSError as exc:
                log.warning("save(): could not copy %s: %s", path, exc)
                continue
            if (after.st_size, after.st_mtime) != mark:
                continue  # rewritten while we copied: the next scan copies it again
            self._copied[(watch.run_id, name)] = mark
            row = (watch.run_id, name, size, mark[1], sha, watch.policy, time.time())
            self.outbox.put(functools.partial(_record, row=row))
            log.debug("save(): copied %s (%d bytes)", path, size)


def _record(store: Any, row: tuple[Any, ...]) -> None:
    store.conn.execute(
        "INSERT INTO run_files(run_id, name, size, mtime, sha256, copies, policy, updated_at) "
        "VALUES (?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT(run_id, name) DO UPDATE SET size=excluded.size, "
        "mtime=excluded.mtime, sha256=excluded.sha256, copies=copies+1, updated_at=excluded.updated_at",
        row,
    )


def _deactivate(store: Any, watch_id: int) -> None:
    store.conn.execute("UPDATE file_watches SET active=0 WHERE id=?", (watch_id,))
