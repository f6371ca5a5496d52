"""Background threads of the daemon, and the one road from them back to the database.

The daemon has a single SQLite writer (the main thread's :class:`~trackiod.ingest.Ingest`). Threads that do
slow work (copying files, hashing blobs, posting webhooks) never write to the database: they put a closure
on an :class:`Outbox`, and the main loop runs those closures inside its own transaction
(:meth:`Outbox.apply`). If that transaction is rolled back, the closures go back on the outbox and run again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("trackiod.workers")

#: A database change computed off the writer thread; called on the writer thread with the store.
Change = Callable[[Any], None]


class Outbox:
    """Database changes waiting for the writer (thread-safe: deque appends and pops are atomic)."""

    def __init__(self) -> None:
        self._changes: deque[Change] = deque()
        self._in_txn: list[Change] = []

    def put(self, change: Change) -> None:
        self._changes.append(change)

    def __bool__(self) -> bool:
        return bool(self._changes)

    def apply(self, store: Any) -> int:
        """Run every waiting change inside the writer's open transaction; returns how many ran."""
        count = 0
        while self._changes:
            change = self._changes.popleft()
            self._in_txn.append(change)
            count += 1
            try:
                change(store)
            except Exception:  # one bad change must not stop the others, nor the daemon
                log.exception("a background result could not be written")
        return count

    def committed(self) -> None:
        self._in_txn.clear()

    def rolled_back(self) -> None:
        """The transaction that ran them was rolled back: run them again with the next one."""
        self._changes.extendleft(reversed(self._in_txn))
        self._in_txn.clear()


class Worker:
    """One thread running jobs (callables) in order; a failing job is logged and the next one runs."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._busy = 0
        self._lock = threading.Lock()
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._busy += 1
        self._jobs.put(job)

    @property
    def idle(self) -> bool:
        """No job queued or running."""
        with self._lock:
            return self._busy == 0

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("background job failed")
            finally:
                with self._lock:
                    self._busy -= 1

    def stop(self, timeout: float = 5.0) -> bool:
        """Finish the job in progress (queued ones are dropped: their state is in the database) and stop.

        True if the thread stopped within ``timeout`` seconds.
        """
        while True:
            try:
                self._jobs.get_nowait()
                with self._lock:
                    self._busy -= 1
            except queue.Empty:
                break
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()
