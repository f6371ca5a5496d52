"""Frames in, transactions out: dedupe by session watermark, run lifecycle, batching, acknowledgements.

One :class:`Ingest` lives in the daemon's single writer thread. A batch is one SQLite transaction, opened at
the first frame after a commit; run lifecycle messages run their SQL at once inside it, points wait in a
:class:`~trackiod.ingest.batch.Batch` and are written column-wise at :meth:`Ingest.commit`. The watermark of every
session in the batch is written in the same transaction, so acknowledged means committed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import apsw
import psutil
from msgpack import unpackb as _unpackb

from trackio_shim import protocol as P
from trackio_shim.errors import FrameRejected, ProtocolError
from trackio_shim.rules import canonical_context
from trackiod.ingest.batch import Batch, Columns, Group
from trackiod.ingest.guard import (
    FrameGuard,
    Undoable,
    caused_by_input,
    check_metric_spec,
    check_plain,
    decode_lenient,
    frame_header,
    is_int64,
    is_step,
    is_time,
    message_header,
)
from trackiod.ingest.media import MediaWriter
from trackiod.ingest.runs import RunBook
from trackiod.ingest.spool import SpoolIngester
from trackiod.ingest.stall import WriteStall, is_storage_error, notice_text, probe_write
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.ingest")

_INT64 = 2**63
_LOG = P.LOG
_MAX_SEQ = P.MAX_SEQ
#: Frames of a BATCH decoded before they are applied. Their lists and maps stay below the garbage collector's
#: first threshold (700 new containers): decoding a whole BATCH of thousands first made it scan and promote
#: them again and again, a third of the cost of a one-key frame (docs/benchmarks.md, "round 4: ingest").
_DECODE_AHEAD = 256

#: Hot-path kinds that check every field before changing anything, so they need no savepoint (frame_guard.py).
_UNGUARDED_KINDS = frozenset({P.LOG, P.LOG_CONTEXT, P.FORWARD})

#: What a forwarder may carry: one sequenced frame of a training process's session (never a FORWARD itself).
_FORWARDABLE = P.SEQUENCED_KINDS - {P.FORWARD}

#: ``send(sid, message)``: deliver a daemon -> client message to a session (dropped if it is gone).
Send = Callable[[bytes, tuple[Any, ...]], None]
#: ``handler(store, run_id, payload)``: store one run attachment (alert, saved files, artifact) inside the open
#: transaction; ValueError and friends make the frame malformed. The layer above ingest registers them by kind.
Handler = Callable[[Store, int, dict[str, Any]], None]


def _ignore(*args: Any) -> None:
    """The hook of a part that is not there (unit tests of the core, a daemon without mirrors)."""


@dataclass(frozen=True)
class IngestHooks:
    """How ingest reaches what lies above it: the socket, the daemon's queries, the mirrors and sync."""

    #: Deliver a message to a session.
    send: Send
    #: ``query(sid, req_id, what, args)``: answer a QUERY (the daemon replies through ``send``).
    query: Callable[[bytes, Any, Any, dict[str, Any]], None] = _ignore
    #: ``after_commit(events, columns)``: what each commit made durable (the mirrors' feed); must return at once.
    after_commit: Callable[[list[tuple[str, int, Any]], Columns], None] = _ignore
    #: Called after a commit that finished a run (the daemon asks sync for a pass).
    after_finish: Callable[[], None] = _ignore


class Participant(Protocol):
    """State kept beside the database for the open transaction (the attachments' queues of background work)."""

    def committed(self) -> None: ...

    def rolled_back(self) -> None: ...

    def mark(self) -> object: ...

    def undo_to(self, mark: object) -> None: ...


class Counters:
    """Figures for ``trackiod status``."""

    def __init__(self) -> None:
        self.frames = 0
        self.points = 0
        self.duplicates = 0
        self.malformed = 0
        self.nacks = 0
        self.commits = 0
        self.commit_ms: list[float] = []
        self.spool_frames = 0
        #: Frames dropped because applying them hit a daemon bug (logged with its traceback), not bad input.
        self.internal_errors = 0
        #: Frames a session sent that no daemon will ever see: its spool file was deleted or truncated.
        self.frames_lost = 0
        #: Idle sessions with no running run forgotten in memory (their watermarks stay in the database).
        self.sessions_pruned = 0
        self.last_error: str | None = None

    def mark(self) -> object:
        """The points counted before one frame (see trackiod.ingest.guard)."""
        return self.points

    def undo_to(self, mark: object) -> None:
        assert isinstance(mark, int)
        self.points = mark

    def note_commit(self, ms: float) -> None:
        self.commits += 1
        self.commit_ms.append(ms)
        if len(self.commit_ms) > 2048:
            del self.commit_ms[:1024]


class Ingest:
    """Applies decoded client messages to the store; see the module docstring."""

    def __init__(
        self,
        store: Store,
        media: MediaWriter,
        hooks: IngestHooks,
        handlers: Mapping[int, Handler],
        *,
        participants: Sequence[Participant] = (),
        spool_dir: Path,
        max_frame_bytes: int,
        boot_id: bytes,
        heartbeat_timeout_s: float,
        journal: bool,
        journal_aliases: Mapping[bytes, tuple[bytes, int]] | None = None,
    ) -> None:
        self.store = store
        self.media = media
        self.hooks = hooks
        self.send = hooks.send
        self.handlers = dict(handlers)
        self.participants = tuple(participants)
        self.boot_id = boot_id
        #: Frames of the open transaction to forward to a head daemon (None: this daemon does not forward).
        self.journal: list[bytes] | None = [] if journal else None
        #: Sessions of runs stored before this node forwarded: journaled under the session id their backfilled
        #: frames use, at ``seq + offset`` (trackiod.daemon.backfill), so the head sees one session continue.
        self.journal_aliases = dict(journal_aliases or {})
        self.committed, handles = store.load_sessions()
        self.accepted = dict(self.committed)
        self.runs = RunBook(store, handles, self.notice)
        self.runs.heartbeat_timeout_s = heartbeat_timeout_s
        #: Frames a shim wrote to disk while no daemon took them; read at start, on a gap and at maintenance.
        self.spool = SpoolIngester(spool_dir, max_frame_bytes, self._replay, self.commit)
        #: Sessions whose live frames were dropped while their spool files waited; NACKed once those are read.
        self._behind_spool: set[bytes] = set()
        self.batch = Batch()
        self.counters = Counters()
        self.stall = WriteStall(store.path)
        self.host = os.uname().nodename
        self._in_txn = False
        self._touched: set[bytes] = set()
        self._dups: set[bytes] = set()
        self._last_nack: dict[bytes, tuple[int, float]] = {}
        self.opened_at = 0.0
        self.last_seen: dict[bytes, float] = {}
        self.runs.last_seen = self.last_seen

    # ------------------------------------------------------------------ entry points
    def handle_raw(self, raw: bytes, routing_id: bytes) -> None:
        """Decode and apply one frame from the socket; malformed frames are counted, logged and dropped."""
        try:
            # msgpack >= 1.0 bounds every container by the frame's length when it unpacks bytes: the same limits
            # P.unpack sets, without its keyword arguments per call. P.unpack words the error.
            msg = _unpackb(raw, strict_map_key=False)
        except Exception:
            try:
                msg = P.unpack(raw)
            except ProtocolError as exc:
                self._undecodable(raw, routing_id, str(exc))
                return
        self.handle_message(msg, routing_id)

    def handle_message(self, msg: Any, routing_id: bytes | None, origin: str = "") -> None:
        """Apply one decoded client message: the one entry point after decoding, whatever carried the frame.

        ``routing_id`` is the sending socket's session (a peer may only speak for its own session), or None for
        a frame read from a spool file (no replies are sent). ``origin`` prefixes the malformed-frame reason.

        A plain LOG frame that continues its session's sequence takes the fast path below: the same checks as
        :func:`~trackio_shim.protocol.check_client` and :meth:`_apply` in one place, for the 500k frames/s of
        one-key frames (docs/benchmarks.md). Anything else, or anything that fails a check there, takes the
        general path, which names what is wrong.
        """
        if type(msg) is list and len(msg) == 7 and msg[0] == P.LOG and type(msg[0]) is int:
            _, sid, seq, handle, step, ts, data = msg
            accepted, journal = self.accepted, self.journal
            if (
                (sid == routing_id if routing_id is not None else type(sid) is bytes)
                and len(sid) == P.SESSION_ID_BYTES
                and type(seq) is int
                and seq == accepted.get(sid, 0) + 1
                and seq <= P.MAX_SEQ
                and type(handle) is int
                and type(step) is int
                and -_INT64 <= step < _INT64
                and type(ts) is float
                and ts - ts == 0.0  # finite: NaN and infinities fail
                and type(data) is dict
                and (journal is None or sid not in self.journal_aliases)
                and not self.stall.active
            ):
                runs = self.runs  # its dicts are replaced on undo and rollback: looked up each time
                run_id = runs.handles.get((sid, handle))
                if run_id is not None and (sid, handle) not in runs.ranks:
                    self.counters.frames += 1
                    if not self._in_txn:
                        self.begin()
                    accepted[sid] = seq
                    self._touched.add(sid)
                    self.batch.add(run_id, step, ts, data)
                    self.counters.points += len(data)
                    if journal is not None:  # a forwarding node: the frame as _sequenced journals it
                        journal.append(P.pack(msg))
                    return
        try:
            kind, sid, seq, fields = P.check_client(msg)
        except ProtocolError as exc:
            self._refused(message_header(msg), routing_id, f"{origin}{exc}")
            return
        if routing_id is not None and sid != routing_id:
            self._malformed(f"{P.KIND_NAMES[kind]}: session id does not match the sending socket")
            return
        if kind == P.BATCH:
            if routing_id is None:  # spool files hold single frames; a shim never spools a BATCH
                self._malformed("BATCH: not a frame of a spool file")
                return
            self._handle_batch(fields, routing_id)
            return
        self.handle(kind, sid, seq, fields, live=routing_id is not None)

    def handle_messages(self, msgs: Iterable[Any], routing_id: bytes | None, origin: str = "") -> None:
        """Apply decoded messages in order, as :meth:`handle_message` applies each (a spool slice, the frames of a
        coalesced message).

        A run of plain LOG frames from one session and run handle, each the next in sequence, is applied with
        the session's lookups done once, at the first frame of the run (which takes :meth:`handle_message`),
        and appended to its batch group directly while the keys stay the same: that is what makes one-key
        frames cheap (about 1 µs a frame here, docs/benchmarks.md "round 4: ingest"). The checks are those of
        the fast path of :meth:`handle_message`. Any other frame ends the run and takes the general path.
        """
        accepted = self.accepted
        run_sid: Any = None  # the session of the current run of LOG frames (None: no run)
        run_handle = run_id = expected = stretch_seq = 0
        # A stretch: the frames of the run with the same keys, appended to one batch group (None: none yet).
        group: Any = None
        keys: Any = None
        steps_append: Any = None  # the group's list methods, bound when a stretch starts
        times_append: Any = None
        values_extend: Any = None
        log_kind, max_seq, int64 = _LOG, _MAX_SEQ, _INT64
        for msg in msgs:
            if run_sid is not None and type(msg) is list and len(msg) == 7:
                kind, sid, seq, handle, step, ts, data = msg
                if (
                    kind is log_kind  # `is`: CPython keeps one object per small int: the int 3, never 3.0
                    and seq == expected
                    and sid == run_sid
                    and handle == run_handle
                    and type(handle) is int
                    and type(seq) is int
                    and seq <= max_seq
                    and type(step) is int
                    and -int64 <= step < int64
                    and type(ts) is float
                    and ts - ts == 0.0
                    and type(data) is dict
                ):
                    frame_keys = tuple(data)
                    if frame_keys != keys:
                        if group is not None:
                            self._took(group, expected - stretch_seq)
                        keys, stretch_seq = frame_keys, expected
                        group = self.batch.group(run_id, keys)
                        steps_append, times_append = group.steps.append, group.times.append
                        values_extend = group.values.extend
                    steps_append(step)
                    times_append(ts)
                    values_extend(data.values())
                    expected += 1
                    continue
            if group is not None:  # the run ends: what it appended is counted and its seqs consumed
                self._took(group, expected - stretch_seq)
                accepted[run_sid] = expected - 1
                group = keys = None
            run_sid = None
            self.handle_message(msg, routing_id, origin)
            first = self._run_start(msg, routing_id)
            if first is not None:
                run_sid, run_handle, run_id = first
                expected = msg[2] + 1
        if group is not None:
            self._took(group, expected - stretch_seq)
            accepted[run_sid] = expected - 1

    def _took(self, group: Group, frames: int) -> None:
        """Count ``frames`` plain LOG frames that :meth:`handle_messages` appended to ``group`` itself."""
        self.batch.took(group, frames)
        self.counters.frames += frames
        self.counters.points += frames * group.width

    def handle_forwarded(self, sid: bytes, batch: Sequence[tuple[int, bytes]]) -> None:
        """A FORWARD_BATCH from the forwarder session ``sid``: each outer sequence number checked as a FORWARD
        frame's, then the inner frames applied together as a spool slice is (:meth:`handle_messages`: deduplicated
        by their own sessions' watermarks, LOG frames on the fast path), in one pass instead of two per frame.
        """
        if sid not in self.accepted:
            self._recall(sid)
        msgs: list[Any] = []
        for seq, raw in batch:
            if self.stall.active:  # not taken, not acknowledged: resent after the retry
                self._refuse(sid)
                break
            expected = self.accepted.get(sid, 0) + 1
            if seq < expected:
                self.counters.duplicates += 1
                self._dups.add(sid)
                continue
            if seq > expected:
                self._nack(sid, expected)
                break
            self.begin()
            self.accepted[sid] = seq
            self._touched.add(sid)
            try:
                msg = _unpackb(raw, strict_map_key=False)
            except Exception as exc:
                self._malformed(f"forwarded frame {seq}: {exc}")
                continue
            if type(msg) is not list or len(msg) < 3 or type(msg[0]) is not int or msg[0] not in _FORWARDABLE:
                self._malformed(f"forwarded frame {seq}: FORWARD must carry one sequenced frame")
                continue
            msgs.append(msg)
        if msgs:
            self.handle_messages(msgs, None, "forwarded: ")

    def _run_start(self, msg: Any, routing_id: bytes | None) -> tuple[bytes, int, int] | None:
        """``(sid, handle, run_id)`` if ``msg`` was a plain LOG frame that :meth:`handle_message` just applied on
        its fast path (so the frames that follow it may skip the session's lookups), else None."""
        if type(msg) is not list or len(msg) != 7 or msg[0] != P.LOG or type(msg[0]) is not int:
            return None
        sid, seq, handle = msg[1], msg[2], msg[3]
        if (
            type(sid) is not bytes
            or (routing_id is not None and sid != routing_id)
            or type(handle) is not int
            or type(seq) is not int
            or self.accepted.get(sid) != seq
            or not self._in_txn
            or self.journal is not None
            or self.stall.active
            or (sid, handle) in self.runs.ranks
        ):
            return None
        run_id = self.runs.handles.get((sid, handle))
        return None if run_id is None else (sid, handle, run_id)

    def _handle_batch(self, fields: list[Any], routing_id: bytes) -> None:
        """A coalesced message (protocol 2): each frame is decoded and applied as if it had come alone.

        Runs of decodable frames go through :meth:`handle_messages` (its LOG fast path); a frame that cannot be
        decoded is one bad frame of its session (:meth:`_undecodable`), in its place in the order. Frames are
        applied :data:`_DECODE_AHEAD` at a time, not decoded all first.
        """
        try:
            frames = P.batch_frames(fields)
        except ProtocolError as exc:
            self._malformed(str(exc), routing_id)
            return
        msgs: list[Any] = []
        for raw in frames:
            if type(raw) is not bytes:
                self._malformed("BATCH: a frame must be msgpack bin", routing_id)
                continue
            try:
                msg = _unpackb(raw, strict_map_key=False)
            except Exception:
                try:
                    msg = P.unpack(raw)
                except ProtocolError as exc:
                    if msgs:
                        self.handle_messages(msgs, routing_id)
                        msgs = []
                    self._undecodable(raw, routing_id, f"BATCH: {exc}")
                    continue
            if type(msg) is list and msg and msg[0] == P.BATCH:
                self._malformed("BATCH: a batch inside a batch", routing_id)
                continue
            msgs.append(msg)
            if len(msgs) == _DECODE_AHEAD:
                self.handle_messages(msgs, routing_id)
                msgs = []
        if msgs:
            self.handle_messages(msgs, routing_id)

    def handle(self, kind: int, sid: bytes, seq: int, fields: list[Any], live: bool) -> None:
        """Apply one decoded message (``live`` False for spool files, which get no replies)."""
        self.counters.frames += 1
        if sid not in self.accepted:
            self._recall(sid)
        if kind in P.CONTROL_KINDS:
            self._control(kind, sid, fields)
        else:
            self._sequenced(kind, sid, seq, fields, live)

    def _undecodable(self, raw: bytes, routing_id: bytes, reason: str) -> None:
        """A frame the strict decoder refused is still one frame of its session: decoded leniently (a tuple key
        from an old shim), or, failing that, its sequence number consumed as one rejected frame, so that the
        session's later frames are never refused as out of order (docs/robustness.md, "One poisoned call")."""
        msg = decode_lenient(raw)
        if msg is not None:
            try:
                kind, sid, seq, fields = P.check_client(msg)
            except ProtocolError as exc:
                self._malformed(str(exc))
                return
            if sid == routing_id:
                self.handle(kind, sid, seq, fields, live=True)
                return
        self._refused(frame_header(raw), routing_id, reason)

    def _refused(self, header: tuple[int, bytes, int] | None, routing_id: bytes | None, reason: str) -> None:
        """A sequenced frame the checks refused is still one frame of its session: its sequence number is
        consumed as one rejected frame (never a reason to refuse the session's later frames as out of order)."""
        if header is None or (routing_id is not None and header[1] != routing_id):
            self._malformed(reason)  # not even a session's frame: nothing to consume
            return
        sid = header[1]
        self.counters.frames += 1
        if sid not in self.accepted:
            self._recall(sid)
        self._sequenced(*header, [], live=routing_id is not None, undecodable=reason)

    def _recall(self, sid: bytes) -> None:
        """Bring back the watermark of a session pruned from memory (:meth:`prune_sessions`), so that its
        resent frames are still recognised as duplicates."""
        mark = self.store.watermark(sid)
        if mark:
            self.committed[sid] = mark
            self.accepted[sid] = mark
            self.runs.recall_session(sid)

    def prune_sessions(self, now: float, idle_s: float) -> int:
        """Forget, in memory, the sessions idle for ``idle_s`` none of whose runs is running; returns how many.

        Every process that ever logged is a session: kept forever, they grow the daemon without bound. Their
        watermarks stay in the database and come back on their next frame (:meth:`_recall`). Only between
        transactions, when what is accepted is also committed.
        """
        if self._in_txn:
            return 0
        active = {row["id"] for row in self.store.active_runs()}
        busy = {sid for (sid, _), run_id in self.runs.handles.items() if run_id in active}
        busy |= self._dups | self.stall.waiting
        gone = {sid for sid in self.accepted if sid not in busy and now - self.last_seen.get(sid, 0.0) > idle_s}
        if not gone:
            return 0
        for sid in gone:
            self.accepted.pop(sid, None)
            self.committed.pop(sid, None)
            self.last_seen.pop(sid, None)
            self._last_nack.pop(sid, None)
        self.runs.forget_sessions(gone)
        self.counters.sessions_pruned += len(gone)
        return len(gone)

    def drop_malformed(self, reason: str) -> None:
        """Count and log a frame refused before it could be decoded (by the socket, the spool or a listener)."""
        self._malformed(reason)

    def _replay(self, msgs: list[Any]) -> None:
        self.handle_messages(msgs, None, "spool: ")

    def spool_step(self, budget: int, batch_limit: int, deadline: float) -> int:
        """Apply up to ``budget`` spooled frames (fewer once the batch holds ``batch_limit`` points or the
        monotonic clock passes ``deadline``); then NACK the sessions that waited for their spool files, now that
        those are read. Returns frames applied.
        """
        batch, clock = self.batch, time.monotonic
        applied = self.spool.step(budget, lambda: batch.points >= batch_limit or clock() >= deadline)
        if self._behind_spool:
            for sid in [s for s in self._behind_spool if not self.spool.holds(s)]:
                self._behind_spool.discard(sid)
                self._last_nack.pop(sid, None)
                self._nack(sid, self.accepted.get(sid, 0) + 1)
        return applied

    def notice(self, sid: bytes | None, text: str, level: str = "warning") -> None:
        """Tell a session something went wrong with what it sent (the shim warns once per text)."""
        log.warning("%s%s", f"session {sid.hex()[:8]}: " if sid else "", text)
        if sid is not None:
            self.send(sid, (P.NOTICE, level, text))

    # ------------------------------------------------------------------ sequenced messages
    def _sequenced(
        self, kind: int, sid: bytes, seq: int, fields: list[Any], live: bool, undecodable: str | None = None
    ) -> None:
        if self.stall.active:  # the disk is full: not taken, not acknowledged; resent after the retry
            self._refuse(sid)
            return
        expected = self.accepted.get(sid, 0) + 1
        if seq > expected and live and self._waits_for_spool(sid):
            return  # resent after its spool files are read (spool_step NACKs it then)
        if seq < expected:
            self.counters.duplicates += 1
            self._dups.add(sid)
            return
        if seq > expected:
            if live:
                self._nack(sid, expected)
                return
            log.warning("session %s: frames %d..%d are missing from its spool", sid.hex()[:8], expected, seq - 1)
            self.counters.frames_lost += seq - expected  # a spool file deleted or truncated: `trackiod status`
        self.begin()
        # Consumed before it is applied: a frame that fails validation must not block the session, and a
        # RUN_START that commits at once must carry its own watermark into that commit.
        self.accepted[sid] = seq
        self._touched.add(sid)
        if self.journal is not None and kind != P.FORWARD and undecodable is None:
            alias = self.journal_aliases.get(sid)
            if alias is None:
                self.journal.append(P.pack([kind, sid, seq, *fields]))
            else:
                self.journal.append(P.pack([kind, alias[0], seq + alias[1], *fields]))
        # All or nothing: a frame that fails halfway leaves no trace (LOG kinds check before they change anything).
        guard = None if kind in _UNGUARDED_KINDS else FrameGuard(self.store, self._undoable())
        commits = self.counters.commits
        try:
            if undecodable is not None:
                raise FrameRejected(undecodable)
            self._apply(kind, sid, seq, fields, live)
        except Exception as exc:
            if is_storage_error(exc) and self._in_txn:
                # The disk refused a write inside the batch: the whole batch, this frame included, is rolled
                # back and waits for space (trackiod.ingest.stall); the rollback resets what the frame's guard holds.
                touched, self._touched = self._touched | {sid}, set()
                self._in_txn = False
                self._rollback(touched, exc)
                return
            # A frame whose transaction already ended (a RUN_START's reply committed it, or a failed commit
            # rolled it back) has nothing left to undo: the commit made it whole, a rollback reset everything.
            if guard is not None and self._in_txn and self.counters.commits == commits:
                guard.undo()
            what = f"{P.KIND_NAMES[kind]} frame {seq} from session {sid.hex()[:8]}"
            if caused_by_input(exc):
                self._malformed(f"{what}: {exc}", sid)
            elif is_storage_error(exc) or isinstance(exc, apsw.Error):
                raise  # the environment's (disk, I/O, a corrupt database): the daemon's loop deals with it
            else:
                self._internal_error(what, exc, sid)
        else:
            if guard is not None and self._in_txn and self.counters.commits == commits:
                guard.release()

    def _undoable(self) -> list[Undoable]:
        """What one frame may change besides the database, each able to mark and undo its own state."""
        return [self.runs, self.media, self.counters, *self.participants]

    def _apply(self, kind: int, sid: bytes, seq: int, fields: list[Any], live: bool) -> None:
        if kind == P.LOG:
            handle, step, ts, data = fields
            if not is_step(step) or not is_time(ts) or not isinstance(data, dict):
                raise FrameRejected("LOG needs an int64 step, a finite timestamp and a dict of values")
            run_id = self.runs.run_for(sid, handle)
            if run_id is not None:
                rank = self.runs.ranks.get((sid, handle)) if self.runs.ranks else None
                if rank is None:
                    self.batch.add(run_id, step, float(ts), data)
                else:
                    self.batch.add_rank(run_id, rank, step, float(ts), data)
                self.counters.points += len(data)
        elif kind == P.MEDIA:
            handle, step, ts, items = fields
            if not is_step(step) or not is_time(ts) or not isinstance(items, dict):
                raise FrameRejected("MEDIA needs an int64 step, a finite timestamp and a map of values")
            run_id = self.runs.run_for(sid, handle)
            rank = self.runs.ranks.get((sid, handle))
            if rank is not None:  # rich values of rank r > 0 are kept under "rank<r>/<key>" (docs/ranks.md)
                items = {f"rank{rank}/{key}": value for key, value in items.items()}
            if run_id is not None:
                rejects = self.media.add(run_id, step, float(ts), items)
                for key, reason in rejects:
                    self.notice(sid, f"key {key!r}: {reason}; the rest of the call was kept")
                if len(rejects) < len(items):
                    self.runs.saw_step(run_id, step)
                self.counters.points += len(items) - len(rejects)
        elif kind == P.SESSION:
            (info,) = fields
            if not isinstance(info, dict) or not _supported(info.get("version")):
                reason = _unsupported_version(info.get("version") if isinstance(info, dict) else None)
                log.warning("refused session %s: %s", sid.hex()[:8], reason)
                if live:
                    self.send(sid, (P.REFUSE, reason))
                return
            if not (info.get("pid") is None or is_int64(info["pid"])) or not isinstance(info.get("host", ""), str):
                raise FrameRejected("SESSION info needs an int pid and a str host (or neither)")
            self.store.save_session(sid, info, self._proc_started(info))
        elif kind == P.RUN_START:
            handle, params = fields
            if not is_int64(handle) or not isinstance(params, dict):
                raise FrameRejected("RUN_START needs an int handle and a map of params")
            try:
                ok, body = self.runs.start(sid, handle, dict(params))
            except FrameRejected as exc:  # a bad project, id or name: init() raises UsageError instead of timing out
                ok, body = False, {"error": P.ERROR_INVALID, "message": f"init(): {exc}"}
            if live and params.get("req") is not None and self.commit():  # the answer promises a committed run
                self.send(sid, (P.REPLY, params["req"], ok, body))
        elif kind == P.CONFIG:
            self.runs.config(sid, fields[0], _as_dict(fields[1], "config"))
        elif kind == P.SUMMARY:
            self.runs.summary(sid, fields[0], _as_dict(fields[1], "summary"), self.batch.arrival)
        elif kind == P.DEFINE_METRIC:
            spec = _as_dict(fields[1], "DEFINE_METRIC spec")
            check_metric_spec(spec)
            self.runs.define_metric(sid, fields[0], spec)
        elif kind == P.RUN_FINISH:
            if not is_int64(fields[1]) or not is_time(fields[2]):
                raise FrameRejected("RUN_FINISH needs an int exit code and a finite timestamp")
            self.runs.finish(sid, fields[0], fields[1], float(fields[2]))
        elif kind == P.FORWARD:
            try:
                inner = P.decode_client(fields[0]) if isinstance(fields[0], bytes) else None
            except ProtocolError as exc:
                raise FrameRejected(f"forwarded frame: {exc}") from None
            if inner is None or inner[0] not in P.SEQUENCED_KINDS or inner[0] == P.FORWARD:
                raise FrameRejected("FORWARD must carry one sequenced frame")
            if inner[1] not in self.accepted:  # a session pruned from memory (its run ended, or was marked crashed)
                self._recall(inner[1])
            self._sequenced(*inner, live=False)  # deduplicated by its own session's watermark
        elif kind == P.LOG_CONTEXT:
            self._log_context(sid, fields)
        elif kind in self.handlers:
            run_id = self.runs.run_for(sid, fields[0])
            if run_id is None:
                return
            payload = fields[1]
            if not isinstance(payload, dict):
                raise ValueError(f"{P.KIND_NAMES[kind]} needs a dict")
            self.handlers[kind](self.store, run_id, payload)

    def _log_context(self, sid: bytes, fields: list[Any]) -> None:
        """LOG with a context: its series are kept apart from the same names logged without one."""
        handle = fields[0]
        run_id = self.runs.run_for(sid, handle)
        if run_id is None:
            return
        step, ts, data, context = fields[1:]
        if not is_step(step) or not is_time(ts) or not isinstance(data, dict):
            raise FrameRejected("LOG_CONTEXT needs an int64 step, a finite timestamp and a dict of values")
        try:
            body = canonical_context(context)
        except ValueError as exc:  # the shim checks the same rule; a frame that breaks it is bad input
            raise FrameRejected(str(exc)) from None
        rank = self.runs.ranks.get((sid, handle))
        store = self.store
        if rank is not None:
            self.batch.add_rank(run_id, rank, step, float(ts), data, None if body is None else store.context_id(body))
        elif body is None:
            self.batch.add(run_id, step, float(ts), data)
        else:
            self.batch.add_context(run_id, store.context_id(body), step, float(ts), data)
        self.counters.points += len(data)

    def _proc_started(self, info: dict[str, Any]) -> float | None:
        """The process's start time, to tell it apart from a later process reusing its pid."""
        if info.get("host") != self.host or not isinstance(info.get("pid"), int):
            return None
        try:
            created = float(psutil.Process(info["pid"]).create_time())
        except (psutil.Error, ValueError, OverflowError):
            return None
        return created if created <= float(info.get("started", 0)) + 1.0 else None

    def _waits_for_spool(self, sid: bytes) -> bool:
        """Whether a session's missing frames may wait in its spool files; if so they are read next.

        Its live frames are then dropped without a NACK (a NACK per frame while the files are read would make
        the shim resend the same frames again and again); :meth:`spool_step` NACKs it once they are read.
        """
        if sid not in self._behind_spool:
            self.spool.prioritize(sid)
            if not self.spool.holds(sid):
                return False
            self._behind_spool.add(sid)
        return True

    def _nack(self, sid: bytes, expected: int) -> None:
        last = self._last_nack.get(sid)
        now = time.monotonic()
        if last is not None and last[0] == expected and now - last[1] < 0.5:
            return
        self._last_nack[sid] = (expected, now)
        self.counters.nacks += 1
        self.send(sid, (P.NACK, expected))

    def _internal_error(self, what: str, exc: Exception, sid: bytes) -> None:
        """A daemon bug while applying a frame (not bad input): the frame was undone; log the traceback."""
        self.counters.internal_errors += 1
        self.counters.last_error = f"internal error applying {what}: {type(exc).__name__}: {exc}"
        if self.counters.internal_errors <= 100 or self.counters.internal_errors % 1000 == 0:
            log.exception("bug: applying %s failed; the frame was dropped (please report this)", what)
        self.send(sid, (P.NOTICE, "warning", f"trackiod failed to store a message (a daemon bug, see its log): {exc}"))

    def _malformed(self, reason: str, sid: bytes | None = None) -> None:
        self.counters.malformed += 1
        self.counters.last_error = reason
        if self.counters.malformed <= 100 or self.counters.malformed % 1000 == 0:
            log.warning("dropped a malformed frame (%d so far): %s", self.counters.malformed, reason)
        if sid is not None:
            self.send(sid, (P.NOTICE, "warning", f"a message was rejected: {reason}"))

    # ------------------------------------------------------------------ control messages
    def _control(self, kind: int, sid: bytes, fields: list[Any]) -> None:
        self.last_seen[sid] = time.time()
        try:
            self._answer_control(kind, sid, fields)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            self._malformed(f"{P.KIND_NAMES[kind]} from session {sid.hex()[:8]}: {exc}", sid)

    def _answer_control(self, kind: int, sid: bytes, fields: list[Any]) -> None:
        if kind == P.PING:
            if fields[0] not in P.SUPPORTED_VERSIONS:
                self.send(sid, (P.REFUSE, _unsupported_version(fields[0])))
                return
            self.send(sid, (P.PONG, self.boot_id, self.committed.get(sid, 0)))
        elif kind == P.SPOOL_READY:
            self.spool.prioritize(sid)
        elif kind == P.RESYNC:
            first = fields[0]
            if type(first) is not int or not 1 <= first <= P.MAX_SEQ:
                raise ValueError(f"RESYNC needs a sequence number from 1 to {P.MAX_SEQ}, got {first!r}")
            if first - 1 > self.accepted.get(sid, 0):
                self.counters.frames_lost += first - 1 - self.accepted.get(sid, 0)
                log.error(
                    "session %s says frames before %d are gone; %d frames were lost",
                    sid.hex()[:8],
                    first,
                    first - 1 - self.accepted.get(sid, 0),
                )
                self.begin()
                self.accepted[sid] = first - 1
                self._touched.add(sid)
        elif kind == P.QUERY:
            req_id, what, args = fields
            self.hooks.query(sid, req_id, what, args if isinstance(args, dict) else {})

    # ------------------------------------------------------------------ transactions
    def begin(self) -> None:
        """Open the writer's transaction unless one is open; :meth:`commit` closes it and sends the ACKs."""
        if not self._in_txn:
            self.store.begin()
            self._in_txn = True
            self.opened_at = time.monotonic()

    @property
    def pending(self) -> bool:
        return self._in_txn or bool(self._dups)

    def commit(self) -> bool:
        """Write the batch, commit, and acknowledge every session it covered; False if it was rolled back."""
        if not self._in_txn:
            if self.stall.active:
                return False
            self._ack_dups()
            return True
        started = time.perf_counter()
        touched, self._touched = self._touched, set()
        finishing = self.runs.finishing
        try:
            columns = self.batch.columns()
            self.runs.write_points(columns)
            self.runs.save_dirty()
            self.store.save_watermarks((sid, self.accepted[sid]) for sid in touched)
            if self.journal:
                self.store.journal(self.journal)
            self.store.commit()
            self.media.committed()
        except apsw.Error as exc:
            self._in_txn = False
            self._rollback(touched, exc)
            return False
        finally:
            self._in_txn = False
            if self.journal:
                self.journal = []
        self.counters.note_commit((time.perf_counter() - started) * 1000)
        if self.stall.since is not None and self.stall.cleared() is not None:
            for sid in touched:
                self.send(sid, (P.NOTICE, "info", f"trackiod writes to {self.store.path} again; nothing was lost"))
        for participant in self.participants:
            participant.committed()
        events, self.runs.events = self.runs.events, []
        if events or columns.series or columns.texts:
            try:
                self.hooks.after_commit(events, columns)
            except Exception as exc:  # a mirror's trouble never reaches the writer
                log.exception("handing committed data to the mirrors failed: %s", exc)
        for sid in touched:
            self.committed[sid] = self.accepted[sid]
            self.send(sid, (P.ACK, self.accepted[sid]))
        self._ack_dups()
        if finishing:
            self.hooks.after_finish()
        return True

    def _ack_dups(self) -> None:
        for sid in self._dups:
            if sid in self.committed:
                self.send(sid, (P.ACK, self.committed[sid]))
        self._dups.clear()

    def _rollback(self, touched: set[bytes], exc: Exception) -> None:
        """Undo a failed batch: forget everything uncommitted and ask its senders to resend.

        A storage error (disk full, I/O) stalls writes instead (trackiod.ingest.stall): the senders are asked to
        resend only at the next retry, so they keep their frames instead of resending into a full disk.
        """
        storage = is_storage_error(exc)
        self.counters.last_error = f"{'write stalled' if storage else 'commit failed'}: {exc}"
        if not storage:
            log.error("commit failed, batch rolled back (its senders will resend): %s", exc)
        self.store.rollback()
        self.media.rolled_back()
        self.batch = Batch()
        for participant in self.participants:
            participant.rolled_back()
        self.accepted = dict(self.committed)
        self.runs.reset()
        self.spool.rewind()  # the frames it applied from the file being read are gone: read it again
        if storage:
            self.stall.enter(exc)
            for sid in touched:
                self._refuse(sid)
            return
        for sid in touched:
            self._nack(sid, self.committed.get(sid, 0) + 1)

    def _refuse(self, sid: bytes) -> None:
        """A session's frame was not taken during a stall: tell it once per stall, NACK it at the retry."""
        if sid not in self.stall.waiting:
            self.stall.waiting.add(sid)
            self.send(sid, (P.NOTICE, "warning", notice_text(self.store.path, self.stall.cause)))

    def may_write(self) -> bool:
        """False while writes are stalled and no retry is due; a due retry probes, then asks for resends."""
        if not self.stall.active:
            return True
        if not self.stall.due():
            return False
        try:
            probe_write(self.store.conn)
        except apsw.Error as exc:
            if not is_storage_error(exc):
                raise
            self.stall.enter(exc)
            return False
        waiting = self.stall.retrying()
        if not waiting:
            self.stall.cleared()
        for sid in waiting:
            self._last_nack.pop(sid, None)
            self._nack(sid, self.committed.get(sid, 0) + 1)
        return True


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    """A config, summary or spec map with string keys whose values can be stored as JSON (FrameRejected if not)."""
    if not isinstance(value, dict):
        raise FrameRejected(f"{what} must be a dict, got {type(value).__name__}")
    items = {str(k): v for k, v in value.items()}
    for key, item in items.items():
        check_plain(item, f"{what} key {key[:80]!r}")
    return items


def _supported(version: Any) -> bool:
    """Whether a session's protocol version is served here (an unhashable one is not a version at all)."""
    return isinstance(version, int) and version in P.SUPPORTED_VERSIONS


def _unsupported_version(version: Any) -> str:
    """One wording for every refusal of a protocol version, so the shim's error always names both sides."""
    return (
        f"protocol version {version!r} is not supported by this trackiod "
        f"(it serves {sorted(P.SUPPORTED_VERSIONS)}); install matching trackiod and trackio_shim versions"
    )
