"""The daemon process: one ROUTER socket, one writer thread, one shutdown path.

The main thread owns the socket and the database. It polls, feeds frames to :class:`~trackiod.ingest.Ingest`,
commits on size or on the flush deadline, acknowledges, and does maintenance (spool files, crashed runs)
on a timer. SIGTERM, SIGINT and ``trackiod stop`` all call :meth:`Daemon.request_shutdown`; the loop then
drains what was received, commits it and exits.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from trackio_shim import protocol as P
from trackio_shim.daemon_state import DaemonState
from trackio_shim.errors import DaemonAlreadyRunning, DaemonError
from trackio_shim.settings import TrackiodSettings
from trackiod import __version__
from trackiod.attachments.dispatch import Features
from trackiod.daemon.integrity import ensure_usable
from trackiod.daemon.ipc import bind_private
from trackiod.daemon.queries import answer_query, daemon_status
from trackiod.ingest.ingest import Ingest
from trackiod.ingest.spool import SpoolIngester, spool_files
from trackiod.mirrors.fanout import MirrorHub
from trackiod.sampling.energy import EnergyBook
from trackiod.sampling.nvml import make_provider
from trackiod.sampling.sampler import Sampler
from trackiod.store.writer import Store
from trackiod.sync.engine import FINISH_DELAY_S, SyncWorker

log = logging.getLogger("trackiod")


class Daemon:
    """One trackiod instance for one data directory."""

    def __init__(self, settings: TrackiodSettings) -> None:
        self.settings = settings
        self.boot_id = os.urandom(8)
        self.started = time.time()
        self._shutdown: str | None = None
        self._lock_fd: int | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        self._rates: tuple[float, int, int] = (time.monotonic(), 0, 0)
        self.frames_per_s = 0.0
        self.points_per_s = 0.0
        self.sampler: Sampler | None = None
        self.energy: EnergyBook | None = None
        self.dashboard: Any = None
        self.dashboard_url: str | None = None

    def request_shutdown(self, reason: str) -> None:
        """The one way to stop: signals and the ``stop`` command all end up here."""
        if self._shutdown is None:
            self._shutdown = reason
            log.info("shutdown requested (%s)", reason)

    # ------------------------------------------------------------------ lifecycle
    def _acquire_lock(self) -> None:
        fd = os.open(self.settings.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(f"a trackiod already serves {self.settings.home}") from None
        self._lock_fd = fd

    def run(self) -> int:
        """Serve until asked to stop; returns the process exit code.

        Raises:
            DaemonAlreadyRunning: another daemon owns this data directory.
        """
        self.settings.ensure_dirs()
        self._acquire_lock()
        self.recovery = ensure_usable(self.settings.db_path, self.settings.media_dir, self.settings.integrity_check)
        self.store = Store(self.settings.db_path)
        self.ctx = zmq.Context(io_threads=1)
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.ingest = Ingest(self.store, self.send, self._ingest_spool_of, self.settings.media_dir)
        self.ingest.boot_id = self.boot_id
        self.ingest.runs.heartbeat_timeout_s = self.settings.heartbeat_timeout_s
        self.ingest.query_hook = self._query
        self.sync = SyncWorker(self.settings)
        self.ingest.after_finish = self._run_finished
        self.features = Features(self.settings)
        self.ingest.features = self.features
        self.features.start(self.store)
        self.mirrors = MirrorHub(self.settings.mirror_specs, self.settings.db_path, self.settings.mirror_queue_points)
        self.mirrors.start([r["id"] for r in self.store.active_runs() if json.loads(r["mirrors"])])
        self.ingest.after_commit = self.mirrors.offer
        self.spool = SpoolIngester(
            self.settings.spool_dir,
            self.settings.max_frame_bytes,
            lambda kind, sid, seq, fields: self.ingest.handle(kind, sid, seq, fields, live=False),
            self.ingest.commit,
            self.ingest._malformed,
        )
        try:
            pending = self.spool.ingest()  # before serving, so resends find their spooled elders committed
            if pending:
                log.info("ingested %d spooled frames at start", pending)
            self._bind()
            self._start_network()
            self._start_sampling()
            if self.settings.dashboard:
                self._start_dashboard()
            self._write_state()
            self.sync.start()
            previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            log.info(
                "trackiod %s serving %s (database %s)",
                __version__,
                self.settings.endpoint,
                self.settings.db_path,
            )
            try:
                self._loop()
                self._drain()
                self._stop_sampling()
                self.mirrors.close(self.settings.drain_timeout_s)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            self._close()
        log.info("trackiod stopped (%s)", self._shutdown)
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request_shutdown(signal.Signals(signum).name)

    def _bind(self) -> None:
        sock = self.sock
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # Frames up to 4x the limit reach _receive, which counts and drops them as malformed; beyond that
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

    def _start_network(self) -> None:
        """The head's CURVE listener and/or this node's forwarder (docs/forwarding.md); both refuse without keys."""
        from trackiod.daemon.forward import Forwarder, Listener

        if self.settings.listen:
            self.listener = Listener(self.settings, self.ctx)
        if self.settings.forward:
            self.forwarder = Forwarder(self.settings, self.ctx, self.store)
            self.ingest.journal = []
        self.poller = zmq.Poller()
        for sock in (self.sock, getattr(self.listener, "sock", None), getattr(self.forwarder, "sock", None)):
            if sock is not None:
                self.poller.register(sock, zmq.POLLIN)

    listener: Any = None
    forwarder: Any = None
    poller: Any = None

    def _start_dashboard(self) -> None:
        """Serve the dashboard from a thread; a dashboard that cannot start is logged, never fatal to ingest."""
        try:
            from trackiod.dashboard.app import DashboardServer

            self.dashboard = DashboardServer(self.settings)
            self.dashboard.start()
            self.dashboard_url = self.dashboard.url()
            log.info("dashboard at %s", self.dashboard_url)
        except Exception as exc:
            log.exception("the dashboard could not start: %s", exc)
            self.ingest.counters.last_error = f"dashboard: {exc}"
            self.dashboard = None

    def _write_state(self) -> None:
        DaemonState(
            pid=os.getpid(),
            endpoint=self.settings.endpoint,
            started=self.started,
            boot_id=self.boot_id.hex(),
            database=str(self.settings.db_path),
            version=__version__,
            dashboard=self.dashboard_url,
        ).write(self.settings.state_path)

    def _start_sampling(self) -> None:
        settings = self.settings
        if settings.sample_interval_s <= 0:
            log.info("system and GPU sampling is off (TRACKIOD_SAMPLE_INTERVAL_S=0)")
            return
        self.sampler = Sampler(settings.sample_interval_s, make_provider(settings.nvml))
        self.energy = EnergyBook(
            self.store,
            self.ingest.runs,
            self.ingest.host,
            settings.sample_interval_s,
            settings.grid_intensity_g_per_kwh,
            settings.location,
        )
        self.sampler.start()

    def _take_samples(self) -> None:
        """Hand the sampler's queued samples to the energy book, in the writer's transaction."""
        sampler, energy = self.sampler, self.energy
        if sampler is None or energy is None:
            return
        sessions = energy.live_sessions()
        sampler.watch(frozenset(s.pid for s in sessions))
        samples = []
        while sampler.queue:
            samples.append(sampler.queue.popleft())
        if samples or energy.buffered:
            self.ingest.begin()
            energy.apply(samples, sessions)
            self.ingest.commit()

    def _stop_sampling(self) -> None:
        if self.sampler is None or self.energy is None:
            return
        self.sampler.stop()
        try:
            self._take_samples()
            self.ingest.begin()
            self.energy.flush_series(time.time(), force=True)
            self.ingest.commit()
        except Exception as exc:
            log.exception("could not store the last samples: %s", exc)

    def _close(self) -> None:
        if self.dashboard is not None:
            # Bounded: open browser connections get a few seconds, then uvicorn is forced out.
            if not self.dashboard.stop(timeout=5.0):
                log.warning("the dashboard thread did not stop in time; leaving it to process exit")
            self.dashboard = None
        sampler = self.sampler
        if sampler is not None:
            sampler.stop()
        sync = getattr(self, "sync", None)
        if sync is not None:
            sync.stop()
        features = getattr(self, "features", None)
        if features is not None:
            features.stop()
            if getattr(self, "ingest", None) is not None:
                try:
                    features.drain(self.ingest)  # results that arrived while stopping
                except Exception:
                    log.exception("could not write the last background results")
        for part in (self.listener, self.forwarder):
            if part is not None:
                part.close()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close(linger=0)
            self.ctx.term()
            if self.settings.endpoint.startswith("ipc://"):
                Path(self.settings.endpoint[6:]).unlink(missing_ok=True)
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
        self.settings.state_path.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock last, after everything is on disk

    # ------------------------------------------------------------------ the loop
    def send(self, sid: bytes, message: tuple[Any, ...]) -> None:
        """Deliver a message to a session; dropped silently if it is gone (acks are cumulative)."""
        if self.listener is not None and sid in self.listener.peers:
            self.listener.send(sid, self._packer.pack(message))
            return
        try:
            self.sock.send_multipart([sid, self._packer.pack(message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _loop(self) -> None:
        settings = self.settings
        ingest = self.ingest
        next_maintenance = time.monotonic() + settings.maintenance_interval_s
        while self._shutdown is None:
            now = time.monotonic()
            wait = next_maintenance - now
            if ingest.pending:
                wait = min(wait, ingest.opened_at + settings.flush_interval_s - now)
            timeout = max(0, min(int(wait * 1000), 100))
            if self.poller is None or (self.listener is None and self.forwarder is None):
                if self.sock.poll(timeout):
                    self._receive(10_000)
            else:
                self._poll_network(timeout)
            now = time.monotonic()
            if ingest.pending and (
                now - ingest.opened_at >= settings.flush_interval_s or ingest.batch.points >= settings.batch_max_points
            ):
                ingest.commit()
            if self.features.outbox and not ingest.stall.active:
                self.features.drain(ingest)
            if now >= next_maintenance:
                next_maintenance = now + settings.maintenance_interval_s
                self._maintenance()

    def _receive(self, budget: int) -> int:
        sock, ingest, limit = self.sock, self.ingest, self.settings.batch_max_points
        max_frame = self.settings.max_frame_bytes
        count = 0
        # Two recv() calls and Frame.more: recv_multipart's per-part option lookups cost more than decoding.
        while count < budget:
            try:
                routing_id = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            count += 1
            body = sock.recv(copy=False)  # a ROUTER always delivers the routing id plus at least one part
            if body.more:
                while sock.rcvmore:
                    sock.recv()
                ingest._malformed("a message must have exactly one part")
                continue
            if len(body) > max_frame:
                ingest._malformed(f"frame of {len(body)} bytes is over max_frame_bytes ({max_frame})")
                continue
            ingest.handle_raw(body.bytes, routing_id)
            if ingest.batch.points >= limit:
                ingest.commit()
        return count

    def _poll_network(self, timeout: int) -> None:
        ready = dict(self.poller.poll(min(timeout, 20) if self.forwarder is not None else timeout))
        if self.sock in ready:
            self._receive(10_000)
        if self.listener is not None and self.listener.sock in ready:
            self.listener.receive(self.ingest, 10_000)
        forwarder = self.forwarder
        if forwarder is not None:
            before = forwarder.acked
            forwarder.receive()
            if forwarder.acked > before:
                self.ingest.begin()  # acknowledged rows leave the journal in the writer's next transaction
                forwarder.trim()
            if not self.ingest._in_txn:
                forwarder.pump()

    def _maintenance(self) -> None:
        try:
            if not self.ingest.may_write():  # the disk is full: nothing is written until a retry (stall.py)
                return
            self.spool.ingest()
            ingest = self.ingest
            ingest.commit()
            self._take_samples()
            self.features.tick(self.store)
            self.features.drain(ingest)
            self.store.checkpoint()
            now = time.time()
            crashed = ingest.runs.find_crashed(now, self.settings.heartbeat_timeout_s, ingest.last_seen)
            if crashed:
                ingest.begin()
                ingest.runs.mark_crashed(crashed, now)
                ingest.commit()
                self.sync.request(FINISH_DELAY_S)
        except Exception as exc:  # maintenance must never take the daemon down
            log.exception("maintenance failed: %s", exc)
            self.ingest.counters.last_error = f"maintenance: {exc}"
        now = time.monotonic()
        then, frames, points = self._rates
        counters = self.ingest.counters
        if now - then >= 1.0:
            self.frames_per_s = (counters.frames - frames) / (now - then)
            self.points_per_s = (counters.points - points) / (now - then)
            self._rates = (now, counters.frames, counters.points)

    def _run_finished(self) -> None:
        self.sync.request(FINISH_DELAY_S)

    def _ingest_spool_of(self, sid: bytes) -> None:
        if spool_files(self.settings.spool_dir, sid):
            self.spool.ingest(sid)

    def _drain(self) -> None:
        """Take in everything already sent to us, commit it, acknowledge it."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while time.monotonic() < deadline and self.sock.poll(50):
            self._receive(10_000)
        self.ingest.commit()

    # ------------------------------------------------------------------ queries
    def _query(self, sid: bytes, req_id: Any, what: Any, args: dict[str, Any]) -> None:
        ok, body = answer_query(self, sid, what, args)
        self.send(sid, (P.REPLY, req_id, ok, body))

    def status(self) -> dict[str, Any]:
        """What ``trackiod status`` shows."""
        return daemon_status(self)
