"""What a run hands over besides metrics (alerts, saved files, artifacts, TensorBoard directories), wired into
the writer as one part.

:class:`Attachments` is owned by the daemon. Ingest calls the handlers it registers (:meth:`Attachments.handlers`)
inside the writer's open transaction, one per kind; after the commit, :meth:`Attachments.committed` hands slow
work to the background threads (webhook delivery, file copies, blob hashing). Their results come back through
the :class:`~trackiod.ingest.outbox.Outbox` and are written by the writer in :meth:`Attachments.drain`.
"""

from __future__ import annotations

import logging
from typing import Any

from trackio_shim import protocol as P
from trackio_shim.settings import TrackiodSettings
from trackiod.attachments.alerts import AlertBook, Notifier
from trackiod.attachments.artifacts import ArtifactBook
from trackiod.attachments.files import FileKeeper
from trackiod.attachments.tensorboard import TensorBoardSync
from trackiod.ingest.ingest import Handler, Ingest
from trackiod.ingest.outbox import Outbox, Worker
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.attachments")


class Attachments:
    """Alerts, files and artifacts for the daemon (see the module docstring)."""

    def __init__(self, settings: TrackiodSettings) -> None:
        self.settings = settings
        self.outbox = Outbox()
        self.worker = Worker("trackiod-files")
        self.notifier = Notifier(settings, self.outbox)
        self.alerts = AlertBook(settings, self.notifier)
        self.files = FileKeeper(settings, self.outbox, self.worker)
        self.artifacts = ArtifactBook(settings, self.outbox, self.worker)
        self.tensorboard = TensorBoardSync(Worker("trackiod-tensorboard"), settings.home / "tensorboard_watches.json")

    def handlers(self) -> dict[int, Handler]:
        """The kinds ingest hands to us, each with the handler that stores it."""
        return {
            P.ALERT: self.alerts.add,
            P.SAVE_FILES: self.files.add,
            P.ARTIFACT_LOG: self.artifacts.log,
            P.ARTIFACT_USE: self.artifacts.use,
            P.TENSORBOARD: self.tensorboard.add,
        }

    def resume(self, store: Store) -> None:
        """Pick up what a previous daemon left: undelivered alerts, active watches (of files and TensorBoard
        directories), pending artifact jobs."""
        alerts = self.alerts.resume_pending(store)
        jobs = self.artifacts.resume(store)
        self.files.resume(store)
        self.tensorboard.resume()
        if alerts or jobs:
            log.info("resuming %d undelivered alerts and %d artifact jobs", alerts, jobs)

    @property
    def pending(self) -> bool:
        """The background threads have results for the writer."""
        return bool(self.outbox) or self.tensorboard.ready

    def drain(self, ingest: Ingest) -> None:
        """Write the background threads' results (writer thread; commits with the open batch)."""
        if self.pending:
            ingest.begin()
            self.outbox.apply(ingest.store)
            self.tensorboard.write(ingest)
            ingest.commit()

    def tick(self, store: Store) -> None:
        """Maintenance: live file watches and final copies for ended runs; reading TensorBoard directories."""
        self.files.tick(store)
        self.tensorboard.tick(store)

    # ------------------------------------------------------------------ a participant of ingest's transaction
    def committed(self) -> None:
        self.outbox.committed()
        self.alerts.committed()
        self.files.committed()
        self.artifacts.committed()
        self.tensorboard.committed()

    def rolled_back(self) -> None:
        self.outbox.rolled_back()
        self.alerts.rolled_back()
        self.files.rolled_back()
        self.artifacts.rolled_back()
        self.tensorboard.rolled_back()

    def mark(self) -> object:
        """Each attachment's mark (a frame that fails is cut back to them)."""
        return [part.mark() for part in (self.alerts, self.files, self.artifacts, self.tensorboard)]

    def undo_to(self, mark: object) -> None:
        assert isinstance(mark, list)
        alerts, files, artifacts, tensorboard = mark
        self.alerts.undo_to(alerts)
        self.files.undo_to(files)
        self.artifacts.undo_to(artifacts)
        self.tensorboard.undo_to(tensorboard)

    # ------------------------------------------------------------------ the background threads
    def stop(self, timeout: float) -> bool:
        """Stop the webhook, file and TensorBoard threads; True if all stopped in time (what is left stays in the
        database; TensorBoard watches end with the daemon)."""
        notifier = self.notifier.stop()
        tensorboard = self.tensorboard.stop(timeout)
        return self.worker.stop(timeout) and notifier and tensorboard

    def status(self) -> dict[str, Any]:
        return {
            "alerts_delivered": self.notifier.delivered,
            "alerts_failed": self.notifier.failed,
            "alerts_queued": self.notifier.pending,
            "file_jobs_idle": self.worker.idle,
            **self.tensorboard.status(),
        }
