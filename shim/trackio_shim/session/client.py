"""The per-process session: one DEALER socket, the unacknowledged-frame buffer, the spool and the pump.

Hot path: a caller holding :attr:`Client.lock` packs a frame and appends it to the buffer. Frames go out
coalesced (docs/protocol.md, BATCH): log() sends whatever is unsent when the last send is ``_WINDOW_S`` old
(a lone call after a pause goes out at once), and the pump sends the rest within the window, so a kill -9
loses at most the last few milliseconds while a tight loop pays one pack and one append per call instead of
a ZeroMQ send. Nothing on that path waits for the daemon. The background *pump* thread, taking the same lock
for a few microseconds every ``pump_interval_s`` (every ``_WINDOW_S`` while frames wait to be sent), reads
acknowledgements, resends after reconnects, spills to the spool when the buffer outgrows ``buffer_bytes``,
pings, and restarts a vanished daemon. All socket access happens under the lock, because ZeroMQ sockets are
not thread-safe.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.errors import ProtocolError, ProtocolVersionError
from trackio_shim.session.discovery import DaemonLocator
from trackio_shim.session.encoding import encode_default, hot_packer, salvage
from trackio_shim.session.spool import Spooler
from trackio_shim.session.spool_writer import SpoolWriter  # at import: the pump must not import while it holds the lock
from trackio_shim.settings import TrackiodSettings

if TYPE_CHECKING:
    from trackio_shim.session.deferred import DeferredCopies

_LOG = P.LOG
_RESEND_BATCH = 4096
#: Frames wait at most this long to be sent (log() sends when the last send is older; the pump otherwise).
_WINDOW_S = 0.002
#: One BATCH message holds at most this many bytes of frames (larger runs are split).
_BATCH_BYTES = 1 << 20
#: Frames sent and not yet acknowledged, at most: ZeroMQ's high-water marks count messages, and a BATCH
#: holds thousands of frames, so without this a daemon slower than the trainer would let gigabytes queue in
#: the sockets' pipes (and a PING wait behind them). Past it, frames wait in the buffer (and the spool).
_MAX_INFLIGHT = 65_536
#: What a buffered frame costs beyond its bytes: the bytes object's header and allocator rounding, and its
#: slot in the list. Counted in the buffer's size, so the trainer's memory stays near buffer_bytes before
#: the pump spools (issue 18, finding 13: 142 MiB for the 64 MiB default when only payloads were counted).
_FRAME_OVERHEAD = 56
_NOBLOCK = zmq.NOBLOCK
_now = time.time


class Reply:
    """A pending answer to a request (a RUN_START or a QUERY), filled in by whoever drains the socket."""

    __slots__ = ("body", "done", "ok")

    def __init__(self) -> None:
        self.done = False
        self.ok = False
        self.body: Any = None


class Client:
    """One session with the daemon; shared by every run in the process.

    It owns the socket and the buffer of unacknowledged frames. It has a :class:`Spooler` (the spool files the
    buffer overflows into, :mod:`trackio_shim.session.spool`) and a :class:`DaemonLocator` (where the daemon
    is, and starting one, :mod:`trackio_shim.session.discovery`).
    """

    def __init__(self, settings: TrackiodSettings) -> None:
        self.settings = settings
        self._created_at = time.monotonic()
        self.sid = os.urandom(P.SESSION_ID_BYTES)
        self.pid = os.getpid()
        self.lock = threading.Lock()
        # Unacknowledged frames are _unacked[_head:], with seqs _base, _base + 1, ... An ACK only moves _head
        # (the list is compacted now and then), so releasing 10,000 frames never holds log() up. The last seq
        # given out is not stored but derived from them (:attr:`seq`): the append is the one step that gives a
        # frame its seq, so an exception a signal handler raises at any point of log() (a timeout helper's,
        # KeyboardInterrupt) leaves buffer and seqs agreeing (docs/robustness.md, "Signals").
        self._unacked: list[bytes] = []
        self._head = 0
        self._base = 1  # seq of _unacked[_head]; frames below it are acknowledged or spooled
        self._bytes = 0
        self._sent = 0  # highest seq handed to ZeroMQ
        self._spooled_to = 0  # last seq handed to the spool: frames up to it are not in flight on the socket
        self._send_by = 0.0  # time.time() of the last send + _WINDOW_S: log() sends from then on
        self._pump_idle = False  # the pump sleeps pump_interval_s: log() wakes it when it leaves frames unsent
        self.hold = False  # when True, callers only buffer; the pump sends (backlog or spooling)
        self.acked = 0
        self._spooler = Spooler(settings, self.sid, self._announce_spool)
        self._boot_id: bytes | None = None
        self.last_heard = 0.0
        self._last_ping = 0.0
        self.refused: str | None = None
        self._replies: dict[int, Reply] = {}
        #: The frames that make this session and its runs known to the daemon (SESSION, each RUN_START), by
        #: run handle (None for SESSION), with the seq each was last sent under: when the frames holding one
        #: are lost (a deleted spool file), it is sent again, or every later point would be dropped.
        self._starts: dict[int | None, tuple[int, list[Any]]] = {}
        self._req_ids = itertools.count(1)
        self.packer = msgpack.Packer(default=encode_default, use_bin_type=True)
        self._max_frame = settings.max_frame_bytes
        self._pack = hot_packer().pack  # strict: a tuple key sends the call to the slow path (session.encoding)
        # Before connecting: a socket directory that others can write in may hold their socket, not trackiod's.
        settings.ensure_socket_dir()
        self._ctx = zmq.Context(io_threads=1)
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.ROUTING_ID, self.sid)
        # IMMEDIATE: with no live connection, send raises Again instead of queueing into a pipe that a
        # dead daemon would take with it; our own buffer is the only queue that matters.
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 10_000)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.setsockopt(zmq.RECONNECT_IVL, 50)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self.endpoint = settings.endpoint
        self._sock.connect(settings.endpoint)
        self._send = self._sock.send
        self._closed = False
        # The pump sleeps by acquiring this lock with a timeout; releasing it wakes the pump. A plain lock, not
        # a threading.Event: Event.set() is Python code around a Condition, and an exception a signal handler
        # raises inside it (in log(), in the main thread) can leave its inner lock held for good.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._deferred: DeferredCopies | None = None
        self._locator = DaemonLocator(settings, self)
        info = {
            "version": P.PROTOCOL_VERSION,
            "pid": self.pid,
            "host": os.uname().nodename,
            "started": time.time(),
            "argv": list(sys.argv[:16]),
            "python": sys.version.split()[0],
            "cuda": cuda_placement(),
        }
        self.emit((P.SESSION, info))
        self._pump = threading.Thread(target=self._pump_loop, name="trackio_shim-pump", daemon=True)
        self._pump.start()

    @property
    def seq(self) -> int:
        """The last sequence number given out (0 before the first frame)."""
        return self._base + len(self._unacked) - self._head - 1

    # ------------------------------------------------------------------ sending
    def emit(self, fields: tuple[Any, ...]) -> int:
        """Send one sequenced message ``(kind, *rest)``; returns its sequence number (0 if not sendable)."""
        with self.lock:
            return self.emit_locked([fields[0], self.sid, 0, *fields[1:]])

    def log_locked(self, handle: int, step: int, data: dict[Any, Any]) -> bool:
        """log()'s hot path (caller holds :attr:`lock`): one pack and one append; a send once per window.

        The enqueue below repeats :meth:`emit_locked` on purpose: a method call is 5% of the budget here.
        Returns False, having sent nothing, for anything unusual (a tensor, a rich value, a value to salvage,
        an oversized frame): the caller then takes the slow path (Run._log_slow) outside the lock.
        """
        unacked = self._unacked
        seq = self._base + len(unacked) - self._head
        ts = _now()
        try:
            frame = self._pack([_LOG, self.sid, seq, handle, step, ts, data])
        except Exception:
            return False
        size = len(frame)
        if size > self._max_frame:
            return False
        unacked.append(frame)  # the frame now has its seq; nothing before this changed any state
        self._bytes += size + _FRAME_OVERHEAD
        if ts >= self._send_by and not self.hold:
            self._send_pending(ts)
        elif self._pump_idle:
            self._pump_idle = False
            self._wake_pump()
        return True

    def flush(self) -> None:
        """Send the frames waiting for the coalescing window now (flush(), finish() and exit call this)."""
        with self.lock:
            if not self.hold and not self._closed and self._sent < self.seq:
                self._send_pending(_now())

    def deferred(self) -> DeferredCopies:
        """The queue of deferred device-to-host copies, created when the first tensor is logged."""
        if self._deferred is None:
            from trackio_shim.session.deferred import DeferredCopies

            self._deferred = DeferredCopies(self.settings.max_inflight_copies, self._emit_resolved)
        return self._deferred

    def drain_deferred(self) -> None:
        """Wait for every deferred copy in flight and send the values (flush, finish, exit)."""
        if self._deferred is not None:
            self._deferred.drain()

    def _emit_resolved(self, handle: int, step: int, ts: float, scalars: dict[str, Any], media: dict[str, Any]) -> None:
        """Hand in a log() call whose deferred copies completed: coalesced like log()'s own frames (a send per
        window, not per call), since these are log() frames too."""
        with self.lock:
            if scalars:
                self.emit_locked([_LOG, self.sid, 0, handle, step, ts, scalars], coalesce=True)
            if media:
                self.emit_locked([P.MEDIA, self.sid, 0, handle, step, ts, media], coalesce=True)

    def emit_locked(self, message: list[Any], coalesce: bool = False) -> int:
        """Send ``[kind, sid, <seq slot>, *fields]``, filling in the seq; the caller holds :attr:`lock`.

        The general path for every sequenced message, and log()'s fallback when a value needs salvaging.
        ``coalesce``: send as log() does, with the frames of the current window (the pump sends them within
        ``_WINDOW_S``), instead of at once. Returns the seq (0 if nothing sendable was left).
        """
        seq = message[2] = self.seq + 1
        if self._closed:
            return 0  # a forked child's copy of its parent's session (a new one serves the child)
        if message[0] == P.SESSION:
            self._starts[None] = (seq, message)
        elif message[0] == P.RUN_START:
            self._starts[message[3]] = (seq, message)
        try:
            frame = self.packer.pack(message)
        except Exception:
            frame = salvage(self.packer, message, self._max_frame)
            if frame is None:
                return 0
        if len(frame) > self._max_frame:
            frame = salvage(self.packer, message, self._max_frame)
            if frame is None:
                return 0
        self._unacked.append(frame)
        self._bytes += len(frame) + _FRAME_OVERHEAD
        if self.hold:
            return seq
        now = _now()
        if not coalesce or now >= self._send_by:
            self._send_pending(now)  # with the log() frames before it, in order
        elif self._pump_idle:
            self._pump_idle = False
            self._wake_pump()
        return seq

    def _send_pending(self, now: float) -> None:
        """Send every buffered frame not yet sent, coalesced (caller holds :attr:`lock`).

        On Again (no peer, or the high-water mark) the rest waits in the buffer and the pump takes over.
        """
        self._send_by = now + _WINDOW_S
        first = self._head + self._sent + 1 - self._base
        if first < self._head:  # frames below _base were spooled or acknowledged meanwhile
            first = self._head
            self._sent = self._base - 1
        if not self._send_range(first, len(self._unacked)):
            self.hold = True

    def _send_range(self, first: int, end: int) -> bool:
        """Send ``_unacked[first:end]`` (one frame alone, more as BATCH messages); False at the first Again
        or when the in-flight window (:data:`_MAX_INFLIGHT`) is full."""
        frames = self._unacked
        room = max(self.acked, self._spooled_to) + _MAX_INFLIGHT - self._sent
        if end - first > room:
            if room <= 0:
                return False
            end = first + room
            if not self._send_range(first, end):
                return False
            return False  # the rest waits for acknowledgements (the pump sends it)
        while first < end:
            if first + 1 == end:
                message = frames[first]
                count = 1
            else:
                chunk = frames[first:end]
                while len(chunk) > 1 and sum(map(len, chunk)) > _BATCH_BYTES:
                    chunk = chunk[: len(chunk) // 2]
                count = len(chunk)
                message = chunk[0] if count == 1 else self._pack([P.BATCH, self.sid, chunk])
            try:
                self._send(message, _NOBLOCK)
            except zmq.ZMQError:
                return False
            self._sent += count
            first += count
        return True

    def _control(self, fields: tuple[Any, ...]) -> bool:
        if self._closed:
            return False
        try:
            self._sock.send(self.packer.pack((fields[0], self.sid, *fields[1:])), zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False

    def _announce_spool(self, path: Path) -> None:
        self._control((P.SPOOL_READY, str(path)))

    # ------------------------------------------------------------------ receiving
    def _drain_locked(self) -> None:
        while True:
            try:
                raw = self._sock.recv(zmq.NOBLOCK)
            except zmq.ZMQError:
                return
            try:
                msg = P.decode_daemon(raw)
                self._handle(msg)
            except (ProtocolError, IndexError, TypeError, ValueError):
                warn_once("bad-daemon-frame", "trackio_shim: ignored a malformed message from trackiod")

    def _handle(self, msg: list[Any]) -> None:
        kind = msg[0]
        self.last_heard = time.monotonic()
        if kind == P.ACK:
            self._ack(int(msg[1]))
        elif kind == P.PONG:
            boot_id, committed = msg[1], int(msg[2])
            if boot_id != self._boot_id:
                # A new daemon (first contact or a restart): whatever was sent may have died with the
                # old one, so resend everything unacknowledged; the daemon drops what it already has.
                self._boot_id = boot_id
                self._sent = self._base - 1
                self.hold = True
            self._ack(committed)
        elif kind == P.NACK:
            self._nack(int(msg[1]))
        elif kind == P.REPLY:
            reply = self._replies.pop(int(msg[1]), None)
            if reply is not None:
                reply.ok, reply.body, reply.done = bool(msg[2]), msg[3], True
        elif kind == P.NOTICE:
            warn_once(("notice", msg[2]), f"trackiod: {msg[2]}")
        elif kind == P.REFUSE:
            self.refused = self.refused or str(msg[1])  # the first reason is the one init() reports
            warn_once("refused", f"trackiod refused this session: {self.refused}")
            for reply in self._replies.values():
                reply.ok, reply.body, reply.done = False, {"error": P.ERROR_REFUSED, "message": self.refused}, True
            self._replies.clear()

    def _ack(self, seq: int) -> None:
        if seq <= self.acked:
            return
        self.acked = seq
        count = min(seq - self._base + 1, len(self._unacked) - self._head)
        if count > 0:
            end = self._head + count
            self._bytes -= sum(map(len, self._unacked[self._head : end])) + count * _FRAME_OVERHEAD
            self._head, self._base = end, self._base + count
            if end >= 4096 and 2 * end >= len(self._unacked):
                del self._unacked[:end]
                self._head = 0
        if self._base <= seq:  # acknowledged frames that had been spooled
            self._base = seq + 1
        self._sent = max(self._sent, self._base - 1)

    def _nack(self, expected: int) -> None:
        if expected >= self._base:
            self._sent = min(self._sent, expected - 1)
            self.hold = True
        elif self._spooler.writer is not None or self._spooler.forget_vanished():
            # Held by spool files: the open one is announced when it is closed, the closed ones again now.
            self._spooler.announce_all()
        else:
            # The daemon wants frames we no longer hold (it lost committed data, or a spool file holding them
            # was deleted): those frames are gone. Send again the starts among them, then tell it to move on.
            self._restart_lost(expected)
            self._control((P.RESYNC, self._base))

    def _restart_lost(self, lost_from: int) -> None:
        """Re-send the SESSION and RUN_START frames among the lost seqs ``lost_from .. _base - 1``.

        They take the last seqs of that range (one lost frame each, so they fit) and go in front of the buffer:
        the daemon applies frames in seq order, so each run is attached again (RUN_START with resume="allow")
        before the points after it, which it would otherwise drop as data for an unknown run.
        """
        last = self._base - 1
        lost = sorted(
            (seq, handle, message)
            for handle, (seq, message) in self._starts.items()
            if max(lost_from, self.acked + 1) <= seq <= last
        )
        if not lost:
            return
        first = last + 1 - len(lost)
        frames = []
        for seq, (_, handle, message) in enumerate(lost, first):
            if message[0] == P.RUN_START:
                params = dict(message[4], req=None)  # nobody waits for its reply now
                if params.get("resume") != "must":
                    params["resume"] = "allow"
                message = [P.RUN_START, self.sid, seq, handle, params]
            else:
                message = [*message[:2], seq, *message[3:]]
            self._starts[handle] = (seq, message)
            frames.append(self.packer.pack(message))
        self._unacked = frames + self._unacked[self._head :]
        self._head, self._base = 0, first
        self._bytes += sum(map(len, frames)) + len(frames) * _FRAME_OVERHEAD
        self._sent = first - 1
        self.hold = True

    # ------------------------------------------------------------------ the pump
    def _pump_loop(self) -> None:
        tensor_calls = 0  # the deferred queue's submits seen by the last round
        while not self._closed:
            # Back sooner while a resend is under way (it goes out in batches), frames wait to be sent, or log()
            # calls with tensors came since the last round or wait for their copies; else every pump interval
            # (log() wakes an idle pump when it leaves a frame unsent). A loop logging tensors thus keeps the
            # pump on the window's cadence, so its calls never wake it: a wake-up per call hands the GIL to the
            # pump at the call's next torch op, which cost about half of the deferred path's time per tensor.
            deferred = self._deferred
            with self.lock:
                backlog = self.hold and self._spooler.writer is None and self.last_heard
                busy = backlog or (not self.hold and self._sent < self.seq)
                if deferred is not None and (deferred.submitted != tensor_calls or deferred.pending()):
                    tensor_calls, busy = deferred.submitted, True
                self._pump_idle = not busy
            self._wake.acquire(timeout=_WINDOW_S if busy else self.settings.pump_interval_s)
            if self._closed:
                return
            try:
                if self._deferred is not None:
                    self._deferred.poll()  # copies finished since the last log(): send them
                self.service()
                if not self._closed:
                    self._locator.maybe_restart(self.last_heard, self.seq > self.acked)
            except Exception as exc:  # the pump must outlive any surprise; the training loop never sees it
                warn_once(("pump", type(exc).__name__), f"trackio_shim: background sender error: {exc!r}")

    def _wake_pump(self) -> None:
        """End the pump's sleep now (one C call, safe against a signal handler's exception)."""
        with contextlib.suppress(RuntimeError):  # already woken: the lock is released and not yet re-taken
            self._wake.release()

    def service(self) -> None:
        """One round of background work: read replies, ping, resend, spool.

        Takes :attr:`lock` for the socket and buffer work only; frames bound for the spool are written after
        releasing it, so log() never waits on the disk.
        """
        with self.lock:
            if self._closed:
                return
            to_spool = self._service_locked()
            if to_spool is None:
                return
            writer, frames = to_spool
            first = self.seq + 1 - len(frames)
            writer.lock.acquire()  # before the client lock is released, so batches reach the file in order
        try:
            writer.write_many(frames, first)
        finally:
            writer.lock.release()

    def _service_locked(self) -> tuple[SpoolWriter, list[bytes]] | None:
        """:meth:`service`'s work under :attr:`lock`; returns frames to append to the spool, if any."""
        self._drain_locked()
        now = time.monotonic()
        if now - self._last_ping >= self.settings.heartbeat_interval_s:
            self._last_ping = now
            self._control((P.PING, P.PROTOCOL_VERSION))
        spooler = self._spooler
        if spooler.writer is not None:
            if spooler.writer.error is not None:
                self._unspool()
                return None
            if self.last_heard > spooler.since:
                self._end_spool()
                return None
            frames = self._take_for_spool()
            return spooler.take(frames), frames
        if self.hold:
            self._send_backlog()
        elif self._sent < self.seq:
            self._send_pending(_now())
        if self._bytes > self.settings.buffer_bytes and spooler.retry_due(now):
            if not spooler.open(self._base):
                return None
            self.hold = True
            warn_once(
                "spooling",
                f"trackio_shim: trackiod has not taken data for a while; spooling to {self.settings.spool_dir} "
                "(nothing is lost; the daemon ingests it when it is back)",
            )
            frames = self._take_for_spool()
            return spooler.take(frames), frames
        return None

    # ------------------------------------------------------------------ the spool (files: Spooler)
    def _take_for_spool(self) -> list[bytes]:
        """Take every buffered frame out of the buffer for the spool: from here on they count as sent."""
        last = self.seq
        frames = self._unacked[self._head :]
        self._unacked, self._head = [], 0
        self._bytes = 0
        self._base = last + 1
        self._sent = self._spooled_to = last
        return frames

    def _end_spool(self) -> bool:
        """Close the spool file and tell the daemon; False if it could not be written (frames kept in memory)."""
        frames = self._take_for_spool()
        if self._spooler.close(frames, self.seq + 1 - len(frames)):
            self.hold = False
            return True
        self._unspool()
        return False

    def _unspool(self) -> None:
        """The spool could not be written (disk full, deleted): put its unwritten frames back in front of the buffer."""
        first, frames, lost_from = self._spooler.give_up(self.acked, self._base)
        if frames:
            self._unacked = frames + self._unacked[self._head :]
            self._head, self._base = 0, first
            self._bytes += sum(map(len, frames)) + len(frames) * _FRAME_OVERHEAD
        if lost_from is not None:  # the file was deleted: what it held is gone, starts included
            self._restart_lost(lost_from)
        self._sent = self._base - 1
        self.hold = True

    def spill_locked(self) -> Path | None:
        """Write every unacknowledged frame to a closed spool file (used when finish() stops waiting)."""
        spooler = self._spooler
        if self._closed:
            return None  # a forked child's copy: its frames are the parent's to deliver
        for attempt in range(2):  # a second file only when the first was deleted (retry_due: not a full disk)
            if spooler.writer is None:
                if len(self._unacked) == self._head:
                    return None
                if (attempt and not spooler.retry_due(time.monotonic())) or not spooler.open(self._base):
                    return None
            assert spooler.writer is not None
            path = spooler.writer.path
            if self._end_spool():
                return path
        return None

    def _send_backlog(self) -> None:
        start = self._sent + 1 - self._base
        if start < 0:
            start = 0
            self._sent = self._base - 1
        first = self._head + start
        # At most _RESEND_BATCH per round, so a long backlog after an outage is resent over several pump
        # rounds instead of holding log() up for tens of milliseconds in one.
        last = min(len(self._unacked), first + _RESEND_BATCH)
        if self._send_range(first, last) and last == len(self._unacked):
            self.hold = False
            self._send_by = _now() + _WINDOW_S

    # ------------------------------------------------------------------ the daemon
    def ping(self, timeout: float) -> bool:
        """Ping the daemon and wait for its answer; True when one answered within ``timeout`` seconds.

        Raises:
            ProtocolVersionError: the daemon refused this session (it cannot serve this shim's version).
        """
        before = self.last_heard
        deadline = time.monotonic() + timeout
        with self.lock:
            self._control((P.PING, P.PROTOCOL_VERSION))
        while time.monotonic() < deadline and not self._closed:
            with self.lock:
                self._drain_locked()
                if self.refused:
                    raise ProtocolVersionError(
                        f"trackiod at {self.settings.endpoint} cannot serve this shim: {self.refused}"
                    )
                if self.last_heard > before:
                    return True
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.poll(5)
                    if not self._sock.poll(0):
                        self._control((P.PING, P.PROTOCOL_VERSION))
        return False

    def ensure_daemon(self) -> bool:
        """Make sure a daemon answers, starting one when allowed; False when none could be reached."""
        return self._locator.ensure_daemon()

    def reconnect(self, endpoint: str) -> None:
        """Point the socket at ``endpoint`` (the daemon's state file says it listens there)."""
        with self.lock:
            if self._closed:
                return
            self._sock.disconnect(self.endpoint)
            self._sock.connect(endpoint)
            self.endpoint = endpoint

    # ------------------------------------------------------------------ waiting
    def wait_acked(self, seq: int, timeout: float) -> bool:
        """Wait until ``seq`` is acknowledged, at most ``timeout`` seconds (less if the daemon is silent)."""
        deadline = time.monotonic() + timeout
        while True:
            self.service()
            with self.lock:
                if self.acked >= seq:
                    return True
                if not self.last_heard or self._closed:
                    return False  # no daemon has ever answered this session: nothing to wait for
                now = time.monotonic()
                silent_for = now - (self.last_heard or self._created_at)
                if now >= deadline or silent_for > max(1.0, 2 * self.settings.heartbeat_interval_s):
                    return False
                self._last_ping = 0.0 if silent_for > 0.5 else self._last_ping
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.poll(5)

    def request(self, fields: tuple[Any, ...], timeout: float, sequenced: bool) -> Reply:
        """Send a message that expects a REPLY and wait for it, at most ``timeout`` seconds.

        ``fields`` holds a placeholder for the request id: the last field's ``"req"`` entry for a sequenced
        message (RUN_START's params), or the second element of a QUERY.
        """
        reply = Reply()
        req_id = next(self._req_ids)
        with self.lock:
            self._replies[req_id] = reply
            if sequenced:
                fields[-1]["req"] = req_id
                self.emit_locked([fields[0], self.sid, 0, *fields[1:]])
            else:
                self._control((fields[0], req_id, *fields[2:]))
        deadline = time.monotonic() + timeout
        while not reply.done and time.monotonic() < deadline and not self._closed:
            self.service()
            with self.lock:
                if not reply.done:
                    with contextlib.suppress(zmq.ZMQError):
                        self._sock.poll(2)
        if not reply.done:
            with self.lock:
                self._replies.pop(req_id, None)
        return reply

    def stats(self) -> dict[str, Any]:
        """Counters for finish()'s summary line and for tests."""
        with self.lock:
            return {
                "seq": self.seq,
                "acked": self.acked,
                "buffered_frames": len(self._unacked) - self._head,
                "buffered_bytes": self._bytes,
                "spooled_frames": self._spooler.frames,
                "spool_files": [str(p) for p in self._spooler.paths],
                "connected": self._boot_id is not None,
            }

    def abandon_in_child(self) -> None:
        """Make this copy of the parent's session inert in a forked child (run in the at-fork hook).

        From here on it sends nothing, waits on nothing and spools nothing: its frames are the parent's, which
        delivers them. Its lock is a new one, since a thread of the parent may have held the old one.
        """
        self.lock = threading.Lock()
        self._closed = True
        self.hold = True
        self._deferred = None

    def close(self, timeout: float | None = None) -> None:
        """Wait (bounded) for acknowledgements, spool whatever is left, and tear the socket down."""
        if self._closed:
            return
        try:
            self.drain_deferred()
        except Exception as exc:  # a device error at exit must not stop the rest from being delivered
            warn_once("drain-at-exit", f"trackio_shim: deferred tensor values could not be read: {exc!r}")
        wait = self.settings.finish_timeout_s if timeout is None else timeout
        if self.seq > self.acked and wait > 0:
            self.wait_acked(self.seq, wait)
        with self.lock:
            if self.seq > self.acked or self._spooler.writer is not None:
                self.spill_locked()
            if len(self._unacked) > self._head:
                warn_once(
                    "lost-at-exit",
                    f"trackio_shim: {len(self._unacked) - self._head} messages could neither be delivered nor "
                    f"spooled to {self.settings.spool_dir} (is the disk full?); they are lost with this process",
                )
            self._closed = True
            self._wake_pump()
        self._pump.join(timeout=1.0)
        with self.lock:
            self._sock.close(linger=0)
        self._ctx.term()


def cuda_placement() -> dict[str, Any]:
    """Which GPUs this process may use, for the daemon's energy attribution (docs/protocol.md, SESSION).

    Never imports torch: its current device is reported only when the caller already initialised CUDA.
    """
    rank = os.environ.get("LOCAL_RANK", "")
    out: dict[str, Any] = {
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "local_rank": int(rank) if rank.isdigit() else None,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                out["device_uuid"] = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        except Exception:  # an old torch without .uuid, a broken CUDA: the NVML process list still works
            pass
    return out


_client: Client | None = None
_client_lock = threading.Lock()


def get_client(settings: TrackiodSettings) -> Client:
    """The process's client, created on first use (and again in a forked child)."""
    global _client
    with _client_lock:
        if _client is None or _client.pid != os.getpid() or _client._closed:
            _client = Client(settings)
        return _client


def current_client() -> Client | None:
    """The live client of this process, if any (never creates one)."""
    return _client if _client is not None and _client.pid == os.getpid() else None


def close_client(timeout: float | None = None) -> None:
    """Close this process's session (see :meth:`Client.close`) and forget it: the next get_client() makes one."""
    global _client
    with _client_lock:
        client = current_client()
        _client = None
    if client is not None:
        client.close(timeout)


def _forget_after_fork() -> None:
    """In a forked child: leave the parent's session alone and let the next get_client() make the child's.

    The child must never touch the inherited socket (libzmq answers EINTR forever after a fork, and a retry
    loop spins) nor wait on an inherited lock (the thread that held it at the fork does not exist here).
    """
    global _client, _client_lock
    _client_lock = threading.Lock()
    inherited, _client = _client, None
    if inherited is not None:
        inherited.abandon_in_child()


os.register_at_fork(after_in_child=_forget_after_fork)
