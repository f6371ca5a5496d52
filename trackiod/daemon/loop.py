"""The writer loop: poll, receive, commit on size or deadline, maintenance on a timer, drain at the end.

It runs on the daemon's main thread, which owns the socket and the database. Frames go to
:class:`~trackiod.ingest.ingest.Ingest`; the batch commits once the socket is drained (at least
:data:`DRAINED_COMMIT_SHARE` of the flush interval after it opened), when it holds ``batch_max_points``, or
when the flush deadline passes; maintenance (looking for spool files, the attachments' results, samples,
crashed runs, the WAL checkpoint) runs every ``maintenance_interval_s``; the WAL is also copied once the
socket is drained and every frame committed (:data:`DRAINED_CHECKPOINT_S`). Spool files are read a slice at a
time between turns (at most :data:`SPOOL_SLICE_S` each), so a restarted daemon serves at once whatever the
spool holds.
:meth:`WriterLoop.request_stop` ends the loop after the current turn; :meth:`WriterLoop.drain` then takes in
what was already sent and commits it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import msgpack
import zmq

from trackio_shim.settings import TrackiodSettings
from trackiod.daemon.services import ForwarderService, ListenerService, SamplingService
from trackiod.daemon.writer import Writer
from trackiod.ingest.spool import spool_files
from trackiod.sync.worker import FINISH_DELAY_S, SyncWorker

log = logging.getLogger("trackiod")

#: The longest one turn spends reading spool files before it looks at the socket again.
SPOOL_SLICE_S = 0.02
#: Frames read from spool files per turn at most (a slice also ends at SPOOL_SLICE_S or a full batch).
SPOOL_SLICE_FRAMES = 50_000
#: A transaction commits once the socket is drained and it has been open this share of ``flush_interval_s``
#: (5 ms of the default 25 ms), else at the flush deadline or the batch's point limit. Committing when the
#: senders have nothing more for us takes most of the batching wait out of log() -> ACK; the floor keeps the
#: ~0.7 ms a commit costs whatever its size (10 series) below about 15 % of a core when frames trickle in
#: (docs/benchmarks.md, "round 4: ingest"). A loaded daemon is rarely drained, so its batches still grow to
#: the flush deadline; a longer flush interval, asked for bigger batches, gets a longer floor too.
DRAINED_COMMIT_SHARE = 0.2
#: Once the socket is drained and every frame committed (ACKs sent), the WAL is copied into the database (PASSIVE) if
#: this long has passed since the last such copy: small copies while the daemon has slack, instead of one copy a
#: maintenance tick long (75-100 ms at 1M points/s, which set the log() -> ACK p99). A daemon that is behind is
#: rarely drained and keeps the once-a-tick copy, which its throughput needs (docs/benchmarks.md, "round 5").
DRAINED_CHECKPOINT_S = 0.1


class Sender:
    """Delivers daemon -> client messages: to a forwarder through the listener, else through the local socket."""

    def __init__(self, sock: zmq.Socket[Any], listening: ListenerService) -> None:
        self.sock = sock
        self.listening = listening
        self._packer = msgpack.Packer(use_bin_type=True)

    def send(self, sid: bytes, message: tuple[Any, ...]) -> None:
        """Deliver a message to a session; dropped silently if it is gone (acks are cumulative)."""
        listener = self.listening.listener
        if listener is not None and sid in listener.peers:
            listener.send(sid, self._packer.pack(message))
            return
        try:
            self.sock.send_multipart([sid, self._packer.pack(message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass


class WriterLoop:
    """The daemon's main loop; see the module docstring."""

    def __init__(
        self,
        settings: TrackiodSettings,
        sock: zmq.Socket[Any],
        writer: Writer,
        listening: ListenerService,
        forwarding: ForwarderService,
        sampling: SamplingService,
        sync: SyncWorker,
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.writer = writer
        self.ingest = writer.ingest
        self.listening = listening
        self.forwarding = forwarding
        self.sampling = sampling
        self.sync = sync
        self.stop_reason: str | None = None
        self._rates: tuple[float, int, int] = (time.monotonic(), 0, 0)
        self.frames_per_s = 0.0
        self.points_per_s = 0.0

    def request_stop(self, reason: str) -> None:
        """End the loop after its current turn; the first reason given is the one logged."""
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("shutdown requested (%s)", reason)

    def run(self) -> None:
        """Serve until :meth:`request_stop`."""
        settings = self.settings
        ingest = self.ingest
        attachments = self.writer.attachments
        listener, forwarder = self.listening.listener, self.forwarding.forwarder
        poller = None
        if listener is not None or forwarder is not None:
            poller = zmq.Poller()
            for sock in (self.sock, getattr(listener, "sock", None), getattr(forwarder, "sock", None)):
                if sock is not None:
                    poller.register(sock, zmq.POLLIN)
        next_maintenance = time.monotonic() + settings.maintenance_interval_s
        flush_s = settings.flush_interval_s
        drained_s = flush_s * DRAINED_COMMIT_SHARE
        drained = True  # whether the last turn read the socket empty (a poll that timed out did)
        checkpointed = (time.monotonic(), ingest.counters.commits)  # the last drained copy: when, after which commit
        while self.stop_reason is None:
            now = time.monotonic()
            wait = next_maintenance - now
            if ingest.pending:
                wait = min(wait, ingest.opened_at + (drained_s if drained else flush_s) - now)
            spooling = ingest.spool.pending and not ingest.stall.active
            # Rounded up: a wake-up a fraction of a millisecond before the commit is due would spin.
            timeout = 0 if spooling else max(0, min(math.ceil(wait * 1000), 100))
            if poller is None:
                drained = not self.sock.poll(timeout) or self._receive(10_000) < 10_000
            else:
                drained = self._poll_network(poller, timeout)
            if spooling:
                self._spool_slice()
                drained = drained and not ingest.spool.pending
            now = time.monotonic()
            if ingest.pending and (
                now - ingest.opened_at >= (drained_s if drained else flush_s)
                or ingest.batch.points >= settings.batch_max_points
            ):
                ingest.commit()
            if (
                drained
                and not ingest.pending
                and ingest.counters.commits != checkpointed[1]
                and now - checkpointed[0] >= DRAINED_CHECKPOINT_S
            ):
                self.writer.store.checkpoint()  # the commits' ACKs went out; no frame waits
                checkpointed = (now, ingest.counters.commits)
            if attachments.pending and not ingest.stall.active:
                attachments.drain(ingest)
            if now >= next_maintenance:
                next_maintenance = now + settings.maintenance_interval_s
                self._maintenance()

    def _spool_slice(self) -> None:
        """Read spooled frames for at most SPOOL_SLICE_S (see trackiod.ingest.spool)."""
        ingest = self.ingest
        try:
            ingest.spool_step(SPOOL_SLICE_FRAMES, self.settings.batch_max_points, time.monotonic() + SPOOL_SLICE_S)
        except Exception as exc:  # like maintenance: a spool file never takes the daemon down
            log.exception("reading spool files failed: %s", exc)
            ingest.counters.last_error = f"spool: {exc}"

    def _receive(self, budget: int) -> int:
        sock, ingest, limit = self.sock, self.ingest, self.settings.batch_max_points
        max_frame, flush_s, clock = self.settings.max_frame_bytes, self.settings.flush_interval_s, time.monotonic
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
                ingest.drop_malformed("a message must have exactly one part")
                continue
            if len(body) > max_frame:
                ingest.drop_malformed(f"frame of {len(body)} bytes is over max_frame_bytes ({max_frame})")
                continue
            ingest.handle_raw(body.bytes, routing_id)
            # Commit at the usual cadence while a backlog is read too: reading until the socket is empty first
            # turned a 0.1 s pause into 0.25-0.3 s before the next ACK (log() -> ACK p99 at 1M points/s).
            if ingest.batch.points >= limit or (ingest.pending and clock() - ingest.opened_at >= flush_s):
                ingest.commit()
        return count

    def _poll_network(self, poller: zmq.Poller, timeout: int) -> bool:
        """Serve the local socket, the listener and the forwarder; True if the sockets with frames were read empty."""
        listener, forwarder = self.listening.listener, self.forwarding.forwarder
        ready = dict(poller.poll(min(timeout, 20) if forwarder is not None else timeout))
        drained = True
        if self.sock in ready:
            drained = self._receive(10_000) < 10_000
        if listener is not None:
            if listener.sock in ready:
                # Frames, then the loop may commit and acknowledge (at the latest once its batch is a flush old).
                received = listener.receive(self.ingest, 20_000, self.settings.flush_interval_s)
                drained = received < 20_000 and drained
            listener.check()
        if forwarder is not None:
            before = forwarder.acked
            forwarder.receive()
            if forwarder.acked > before:
                self.ingest.begin()  # acknowledged rows leave the journal in the writer's next transaction
                forwarder.trim()
            # Also while a transaction is open: journal rows enter the table only as their transaction commits,
            # so what pump() reads is committed. Waiting for a moment between transactions starved it on a busy
            # node, where a new frame opens the next transaction right after each commit.
            forwarder.pump()
        return drained

    def _maintenance(self) -> None:
        ingest, store = self.ingest, self.writer.store
        try:
            if not ingest.may_write():  # the disk is full: nothing is written until a retry (stall.py)
                return
            ingest.spool.scan()  # files are read between turns (_spool_slice)
            ingest.commit()
            self.sampling.take()
            self.writer.attachments.tick(store)
            self.writer.attachments.drain(ingest)
            store.checkpoint()
            now = time.time()
            # A run whose last frames (its finish among them) wait in a spool file is not crashed: it is read soon.
            crashed = ingest.runs.find_crashed(
                now,
                self.settings.heartbeat_timeout_s,
                ingest.last_seen,
                lambda sid: ingest.spool.holds(sid) or bool(spool_files(self.settings.spool_dir, sid)),
            )
            if crashed:
                ingest.begin()
                ingest.runs.mark_crashed(crashed, now)
                ingest.commit()
                self.sync.request(FINISH_DELAY_S)
            ingest.prune_sessions(now, self.settings.heartbeat_timeout_s)
        except Exception as exc:  # maintenance must never take the daemon down
            log.exception("maintenance failed: %s", exc)
            ingest.counters.last_error = f"maintenance: {exc}"
        now = time.monotonic()
        then, frames, points = self._rates
        counters = ingest.counters
        if now - then >= 1.0:
            self.frames_per_s = (counters.frames - frames) / (now - then)
            self.points_per_s = (counters.points - points) / (now - then)
            self._rates = (now, counters.frames, counters.points)

    def drain(self) -> None:
        """Take in everything already sent to us, commit it, acknowledge it."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while time.monotonic() < deadline and self.sock.poll(50):
            self._receive(10_000)
        self.ingest.commit()
        self.ingest.spool.close()  # a file read in part is read again by the next daemon (the watermark dedupes)
