"""The sequenced messages beyond metrics: alerts, saved files, artifacts and metric context.

:class:`Features` is owned by the daemon. Inside the writer's open transaction, :meth:`Features.apply`
stores each message; after the commit, :meth:`Features.committed` hands slow work to the background threads
(webhook delivery, file copies, blob hashing). Their results come back through the
:class:`~trackiod.ingest.outbox.Outbox` and are written by the writer in :meth:`Features.drain`.
"""

from __future__ import annotations

import logging
from typing import Any

from trackio_shim import protocol as P
from trackio_shim.rules import canonical_context
from trackio_shim.settings import TrackiodSettings
from trackiod.attachments.alerts import AlertBook, Notifier
from trackiod.attachments.artifacts import ArtifactBook
from trackiod.attachments.files import FileKeeper
from trackiod.ingest.guard import is_step, is_time
from trackiod.ingest.outbox import Outbox, Worker

log = logging.getLogger("trackiod.features")

KINDS = frozenset({P.ALERT, P.SAVE_FILES, P.ARTIFACT_LOG, P.ARTIFACT_USE, P.LOG_CONTEXT})


class Features:
    """Alerts, files, artifacts and context for the daemon (see the module docstring)."""

    def __init__(self, settings: TrackiodSettings) -> None:
        self.settings = settings
        self.outbox = Outbox()
        self.worker = Worker("trackiod-files")
        self.notifier = Notifier(settings, self.outbox)
        self.alerts = AlertBook(settings, self.notifier)
        self.files = FileKeeper(settings, self.outbox, self.worker)
        self.artifacts = ArtifactBook(settings, self.outbox, self.worker)

    def start(self, store: Any) -> None:
        """Pick up what a previous daemon left: undelivered alerts, active watches, pending artifact jobs."""
        alerts = self.alerts.resume_pending(store)
        jobs = self.artifacts.resume(store)
        self.files.resume(store)
        if alerts or jobs:
            log.info("resuming %d undelivered alerts and %d artifact jobs", alerts, jobs)

    def apply(self, ingest: Any, kind: int, sid: bytes, fields: list[Any]) -> None:
        """Store one message inside the open transaction (ValueError and friends: a malformed frame)."""
        handle, payload = fields[0], fields[1]
        run_id = ingest.runs.run_for(sid, handle)
        if run_id is None:
            return
        store = ingest.store
        if kind == P.LOG_CONTEXT:
            step, ts, data, context = fields[1:]
            if not is_step(step) or not is_time(ts) or not isinstance(data, dict):
                raise ValueError("LOG_CONTEXT needs an int64 step, a finite timestamp and a dict of values")
            body = canonical_context(context)
            rank = ingest.runs.ranks.get((sid, handle))
            if rank is not None:
                ingest.batch.add_rank(
                    run_id, rank, step, float(ts), data, None if body is None else store.context_id(body)
                )
            elif body is None:
                ingest.batch.add(run_id, step, float(ts), data)
            else:
                ingest.batch.add_context(run_id, store.context_id(body), step, float(ts), data)
            ingest.counters.points += len(data)
            return
        if not isinstance(payload, dict):
            raise ValueError(f"{P.KIND_NAMES[kind]} needs a dict")
        if kind == P.ALERT:
            self.alerts.add(store, run_id, payload)
        elif kind == P.SAVE_FILES:
            self.files.add(store, run_id, payload)
        elif kind == P.ARTIFACT_LOG:
            self.artifacts.log(store, run_id, payload)
        elif kind == P.ARTIFACT_USE:
            self.artifacts.use(store, run_id, payload)

    def drain(self, ingest: Any) -> None:
        """Write the background threads' results (writer thread; commits with the open batch)."""
        if self.outbox:
            ingest.begin()
            self.outbox.apply(ingest.store)
            ingest.commit()

    def tick(self, store: Any) -> None:
        """Maintenance: live file watches and final copies for ended runs."""
        self.files.tick(store)

    def committed(self) -> None:
        self.outbox.committed()
        self.alerts.committed()
        self.files.committed()
        self.artifacts.committed()

    def rolled_back(self) -> None:
        self.outbox.rolled_back()
        self.alerts.rolled_back()
        self.files.rolled_back()
        self.artifacts.rolled_back()

    def stop(self) -> None:
        self.notifier.stop()
        self.worker.stop()

    def status(self) -> dict[str, Any]:
        return {
            "alerts_delivered": self.notifier.delivered,
            "alerts_failed": self.notifier.failed,
            "alerts_queued": self.notifier.pending,
            "file_jobs_idle": self.worker.idle,
        }
