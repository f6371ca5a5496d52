"""The daemon process: the data directory's lock, ``daemon.json``, the socket, the services, one shutdown path.

:class:`Daemon` builds every part in its constructor, in order, each registering its own release on one exit
stack: the lock, the socket, the writer (store, ingest, attachments), the writer loop and the
:class:`~trackiod.daemon.services.Services`. :meth:`Daemon.run` starts the services, queues what was
spooled (read in the background of the loop), binds, serves, and on every exit path (the loop returned or
raised) stops the services in reverse order and releases the rest in reverse, the lock last. SIGTERM, SIGINT
and ``trackiod stop`` all call :meth:`Daemon.request_shutdown`; the loop then drains what was received,
commits it and exits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import zmq

from trackio_shim import protocol as P
from trackio_shim.daemon_state import DaemonState
from trackio_shim.errors import DaemonAlreadyRunning, DaemonError
from trackio_shim.settings import TrackiodSettings
from trackiod import __version__
from trackiod.daemon.integrity import BackgroundCheck, checks_upfront, ensure_usable, mark_clean, take_clean_mark
from trackiod.daemon.ipc import bind_private
from trackiod.daemon.loop import Sender, WriterLoop
from trackiod.daemon.queries import answer_query
from trackiod.daemon.services import (
    AttachmentsService,
    DashboardService,
    ForwarderService,
    IntegrityService,
    ListenerService,
    MirrorsService,
    SamplingService,
    Services,
    SyncService,
)
from trackiod.daemon.status import daemon_status
from trackiod.daemon.writer import build_writer
from trackiod.ingest.ingest import Ingest, IngestHooks
from trackiod.mirrors.fanout import MirrorHub
from trackiod.sync.worker import FINISH_DELAY_S, SyncWorker

log = logging.getLogger("trackiod")

#: How long the dashboard, the sampler, sync and the file thread each get to stop.
_STOP_TIMEOUT_S = 5.0


class Daemon:
    """One trackiod instance for one data directory.

    Raises:
        DaemonAlreadyRunning: another daemon owns this data directory.
    """

    def __init__(self, settings: TrackiodSettings) -> None:
        self.settings = settings
        self.boot_id = os.urandom(8)
        self.started = time.time()
        self._exit = ExitStack()
        try:
            self._build()
        except BaseException:
            self._exit.close()
            raise

    def _build(self) -> None:
        """Create every part, each registering its release (run in reverse: the services first, the lock last)."""
        settings, exit_stack = self.settings, self._exit
        settings.ensure_dirs()
        self._lock()
        exit_stack.callback(settings.state_path.unlink, missing_ok=True)
        db_path, check = settings.db_path, settings.integrity_check
        closed_cleanly = take_clean_mark(db_path)
        deferred = check != "off" and checks_upfront(db_path, check) != check and not closed_cleanly
        self.recovery = ensure_usable(db_path, settings.media_dir, check)
        background = BackgroundCheck(db_path, check) if deferred and self.recovery is None else None
        self.ctx = zmq.Context(io_threads=1)
        exit_stack.callback(self.ctx.term)
        self.sock = self.ctx.socket(zmq.ROUTER)
        exit_stack.callback(self._close_socket)
        self.sync = SyncWorker(settings)
        mirrors = MirrorHub(settings.mirror_specs, settings.db_path, settings.mirror_queue_points)
        listening = ListenerService(settings, self.ctx)
        self._sender = Sender(self.sock, listening)
        hooks = IngestHooks(
            send=self._sender.send, query=self._query, after_commit=mirrors.offer, after_finish=self._run_finished
        )
        self.writer = build_writer(settings, hooks, boot_id=self.boot_id)
        store, ingest = self.writer.store, self.writer.ingest
        exit_stack.callback(self._close_store)
        forwarding = ForwarderService(settings, self.ctx, store)
        sampling = SamplingService(settings, ingest, _STOP_TIMEOUT_S)
        self.dashboard = DashboardService(settings, ingest, _STOP_TIMEOUT_S)
        # Started in this order, stopped in the reverse: sync and the dashboard first; then the sampler, whose
        # last samples are written before the mirrors close; the attachments last, their final results drained.
        self.services = Services(
            [
                AttachmentsService(self.writer.attachments, ingest, _STOP_TIMEOUT_S),
                MirrorsService(mirrors, store, settings.drain_timeout_s),
                listening,
                forwarding,
                sampling,
                self.dashboard,
                SyncService(self.sync, _STOP_TIMEOUT_S),
                IntegrityService(background),
            ]
        )
        exit_stack.callback(self.services.stop)
        self.loop = WriterLoop(settings, self.sock, self.writer, listening, forwarding, sampling, self.sync)

    def _close_store(self) -> None:
        """Close the database, then record that it was closed cleanly (the next start skips the background check)."""
        self.writer.store.close()
        mark_clean(self.settings.db_path)

    @property
    def ingest(self) -> Ingest:
        return self.writer.ingest

    def request_shutdown(self, reason: str) -> None:
        """The one way to stop: signals and the ``stop`` command all end up here."""
        self.loop.request_stop(reason)

    # ------------------------------------------------------------------ lifecycle
    def _lock(self) -> None:
        fd = os.open(self.settings.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(f"a trackiod already serves {self.settings.home}") from None
        self._exit.callback(os.close, fd)  # releases the lock last, after everything is on disk

    def run(self) -> int:
        """Serve until asked to stop; returns the process exit code. Everything is released when it returns."""
        with self._exit:
            self.services.start()
            # Spooled frames are read in the background of the loop (trackiod.ingest.spool): serving starts now.
            self.writer.ingest.spool.scan()
            self._bind()
            self._write_state()
            previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            log.info("trackiod %s serving %s (database %s)", __version__, self.settings.endpoint, self.settings.db_path)
            try:
                self.loop.run()
                self.loop.drain()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        log.info("trackiod stopped (%s)", self.loop.stop_reason)
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request_shutdown(signal.Signals(signum).name)

    def _bind(self) -> None:
        sock = self.sock
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # Frames up to 4x the limit reach the loop, which counts and drops them as malformed; beyond that
        # ZeroMQ itself refuses them (it drops the connection) so that no peer makes us allocate without bound.
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * self.settings.max_frame_bytes)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        endpoint = self.settings.endpoint
        if endpoint.startswith("ipc://"):
            # We hold the data directory's lock, so a socket file left here is a dead daemon's.
            Path(endpoint[6:]).unlink(missing_ok=True)
        elif endpoint.startswith("tcp://"):
            raise DaemonError(
                "training processes talk only to their node's daemon over ipc://; for several nodes, forward this "
                "daemon to a head with --forward and let the head --listen (docs/forwarding.md)"
            )
        if endpoint.startswith("ipc://"):
            bind_private(sock, endpoint)
        else:
            sock.bind(endpoint)

    def _close_socket(self) -> None:
        self.sock.close(linger=0)
        if self.settings.endpoint.startswith("ipc://"):
            Path(self.settings.endpoint[6:]).unlink(missing_ok=True)

    def _write_state(self) -> None:
        DaemonState(
            pid=os.getpid(),
            endpoint=self.settings.endpoint,
            started=self.started,
            boot_id=self.boot_id.hex(),
            database=str(self.settings.db_path),
            version=__version__,
            dashboard=self.dashboard.url,
        ).write(self.settings.state_path)

    # ------------------------------------------------------------------ what the writer calls back
    def _run_finished(self) -> None:
        self.sync.request(FINISH_DELAY_S)

    def _query(self, sid: bytes, req_id: Any, what: Any, args: dict[str, Any]) -> None:
        ok, body = answer_query(self, sid, what, args)
        self._sender.send(sid, (P.REPLY, req_id, ok, body))

    def status(self) -> dict[str, Any]:
        """What ``trackiod status`` shows."""
        return daemon_status(self.settings, self.started, self.recovery, self.loop, self.services)
