"""The writer's parts, built in one place: the store, ingest, and the attachments it hands kinds to.

Ingest sits below the attachments and cannot import them, so this function (in the layer above both) builds
the attachments first and gives ingest their handlers and their transaction hooks. The daemon and the
in-process test rig both build their writer here, so the two cannot wire it differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from trackio_shim.settings import TrackiodSettings
from trackiod.attachments.dispatch import Attachments
from trackiod.daemon.backfill import prepare_journal
from trackiod.daemon.node_role import journals
from trackiod.ingest.ingest import Ingest, IngestHooks
from trackiod.ingest.media import MediaWriter
from trackiod.store.writer import Store


@dataclass(frozen=True)
class Writer:
    """What the writer thread owns; the daemon closes the store last, after every service stopped."""

    store: Store
    ingest: Ingest
    attachments: Attachments


def build_writer(settings: TrackiodSettings, hooks: IngestHooks, *, boot_id: bytes) -> Writer:
    """Open the store and build ingest with the attachments' handlers.

    The attachments' threads run from here on: stop them (:meth:`Attachments.stop`) before closing the store.
    A previous daemon's pending work is resumed by the daemon's attachments service, when it starts.
    """
    store = Store(settings.db_path, settings.checkpoint_pages)
    journal = journals(settings)
    # Before any frame is applied: runs stored while the node had no role go into the journal first.
    aliases = prepare_journal(store, settings.sync_dir) if journal else {}
    attachments = Attachments(settings)
    ingest = Ingest(
        store,
        MediaWriter(store, settings.media_dir),
        hooks,
        attachments.handlers(),
        participants=(attachments,),
        spool_dir=settings.spool_dir,
        max_frame_bytes=settings.max_frame_bytes,
        boot_id=boot_id,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        journal=journal,
        journal_aliases=aliases,
    )
    return Writer(store, ingest, attachments)
