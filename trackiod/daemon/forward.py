"""Several nodes: a node's daemon forwards what it committed to a head daemon over TCP with CURVE (docs/forwarding.md).

The forwarding daemon journals every sequenced frame it accepts in ``forward_journal``, in the same
transaction as the data, so the journal is exactly what is committed locally and survives kill -9. The
:class:`Forwarder` (driven by the daemon's main loop, so the single writer stays single) sends journal rows
to the head as ``FORWARD`` frames over a CURVE DEALER: the journal id is the outer sequence number of the
forwarder's own session, and acknowledged rows are deleted. The head's :class:`Listener` (a CURVE ROUTER,
ZAP-authenticated against authorised public keys) applies each inner frame as if its session had sent it,
deduplicated by that session's watermark, and acknowledges the outer sequence after commit: end to end,
acknowledged means committed on the head, and a resend is dropped exactly when it was already stored.

Many journal rows travel in one ``FORWARD_BATCH`` message (the per-message cost of CURVE, ZeroMQ and the
head's poll loop, not the frames, limited the head to a few thousand frames a second). Both ends watch their
socket's handshake events, so a refused key or a wrong head key is said in the log and in ``trackiod status``
on both sides; ZeroMQ gives up on a connection the head refused, so the forwarder reconnects on its own
(with a growing pause) and picks up a key authorised later, or a head key changed with ``trackiod keys``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from trackio_shim import protocol as P
from trackio_shim.errors import DaemonError, ProtocolError
from trackio_shim.settings import TrackiodSettings
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.forward")

#: Go back to the last ACK when none came for this long (a lost connection resends at once, see _on_event).
#: Long, because a busy head may take seconds to commit a backlog, and a resend it must drop costs it as much.
RESEND_AFTER_S = 15.0
#: One FORWARD_BATCH holds at most this many journal rows, and about this many bytes of frames.
BATCH_ROWS = 2000
BATCH_BYTES = 1 << 20
#: After the head refused this node's key: the first pause before trying again, and the longest.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 15.0
#: The handshake events both ends watch (a monitor socket per forwarding socket).
_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_DISCONNECTED
)


# ----------------------------------------------------------------------------- keys
def write_keys(keys_dir: Path) -> tuple[bytes, bool]:
    """This node's CURVE key pair under ``keys_dir`` (created with 0600 if missing); returns (public, created)."""
    _make_keys_dir(keys_dir)
    public, secret = keys_dir / "node.public", keys_dir / "node.secret"
    if public.exists() and secret.exists():
        return public.read_bytes().strip(), False
    pub, sec = zmq.curve_keypair()
    for path, value in ((secret, sec), (public, pub)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(value + b"\n")
    return pub, True


def _make_keys_dir(keys_dir: Path) -> None:
    # The data directory too, when `trackiod keys` runs first: private, or the daemon would refuse it later.
    keys_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys_dir.mkdir(mode=0o700, exist_ok=True)


def _check_key(key: str, what: str) -> bytes:
    raw = key.strip().encode()
    if len(raw) != 40:
        raise DaemonError(f"{what} {key!r} is not a 40-character Z85 CURVE public key (see `trackiod keys`)")
    return raw


def authorize(keys_dir: Path, key: str) -> None:
    """Let the forwarder with public key ``key`` connect to this (head) node."""
    raw = _check_key(key, "client key")
    path = keys_dir / "authorized"
    present = set(path.read_bytes().split()) if path.exists() else set()
    if raw not in present:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            out.write(raw + b"\n")


def set_head_key(keys_dir: Path, key: str) -> None:
    """Remember the head's public key, which this node's forwarder checks the head against."""
    raw = _check_key(key, "head key")
    _make_keys_dir(keys_dir)
    fd = os.open(keys_dir / "head.public", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(raw + b"\n")


def _node_keys(keys_dir: Path, role: str) -> tuple[bytes, bytes]:
    public, secret = keys_dir / "node.public", keys_dir / "node.secret"
    if not (public.exists() and secret.exists()):
        raise DaemonError(
            f"a {role} needs CURVE keys and {keys_dir} has none; run `trackiod keys` first (docs/forwarding.md)"
        )
    if secret.stat().st_mode & 0o077:
        raise DaemonError(f"{secret} is readable by others; chmod 600 it")
    return public.read_bytes().strip(), secret.read_bytes().strip()


def preflight(settings: TrackiodSettings) -> None:
    """Check the keys the configured listener and forwarder need, before a role is stored or a daemon starts.

    Raises:
        DaemonError: a key is missing or unsafe; the text names the `trackiod keys` command that fixes it.
    """
    if settings.listen:
        _node_keys(settings.keys_dir, "TCP listener")
        authorized = settings.keys_dir / "authorized"
        if not authorized.exists() or not authorized.read_bytes().split():
            raise DaemonError(
                f"a TCP listener needs authorised forwarder keys and {authorized} lists none; "
                "run `trackiod keys --authorize=KEY` with each forwarding node's public key"
            )
    if settings.forward:
        _node_keys(settings.keys_dir, "forwarder")
        head_key = settings.keys_dir / "head.public"
        if not head_key.exists():
            raise DaemonError(f"forwarding needs the head's public key: run `trackiod keys --head=KEY` ({head_key})")


# ----------------------------------------------------------------------------- the head's side
class _AllowList:
    """ZAP CURVE callback: a client may connect only with an authorised public key (re-read on change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self._keys: set[bytes] = set()
        #: Connections refused (read by the daemon's thread for status; ints and str swap atomically).
        self.refused = 0
        self.last_refused: str | None = None

    def callback(self, domain: str, key: bytes) -> bool:
        stamp = self.path.stat().st_mtime if self.path.exists() else None
        if stamp != self._stamp:
            self._stamp = stamp
            self._keys = set(self.path.read_bytes().split()) if self.path.exists() else set()
        # pyzmq hands the key over Z85-encoded already; raw 32-byte keys are encoded for safety.
        z85 = zmq.utils.z85.encode(key) if len(key) == 32 else key
        allowed = z85 in self._keys
        if not allowed:
            self.refused += 1
            self.last_refused = z85.decode(errors="replace")
            log.warning(
                "refused a forwarder with an unknown CURVE key %s; if it is one of yours, run "
                "`trackiod keys --authorize=%s` here (it retries on its own)",
                self.last_refused,
                self.last_refused,
            )
        return allowed


class Listener:
    """The head's TCP ROUTER: CURVE server, clients authorised by public key; refuses to start without keys."""

    def __init__(self, settings: TrackiodSettings, ctx: zmq.Context[Any]) -> None:
        preflight(settings)
        public, secret = _node_keys(settings.keys_dir, "TCP listener")
        authorized = settings.keys_dir / "authorized"
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.allow = _AllowList(authorized)
        self.auth.configure_curve_callback("*", credentials_provider=self.allow)
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.curve_server = True
        self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 4 * settings.max_frame_bytes + 1024)
        self.monitor = self.sock.get_monitor_socket(_EVENTS)
        self.sock.bind(settings.listen)
        self.peers: set[bytes] = set()
        #: Forwarders whose CURVE handshake failed (a wrong head key on that node, most likely), and the last.
        self.handshake_failures = 0
        self.last_failure: str | None = None
        self._told_at = 0.0
        log.info("listening for forwarders on %s (CURVE)", settings.listen)

    def receive(self, ingest: Any, budget: int, flush_s: float) -> int:
        """Apply FORWARD_BATCH, FORWARD and PING from forwarders (budget: frames); anything else is dropped.

        Returns once the open transaction is ``flush_s`` old, so that the loop commits and acknowledges on its
        usual cadence even while forwarders send a backlog faster than this head applies it (a budget alone let
        a catching-up head hold seconds of points uncommitted: log() -> visible on the head p99 in seconds).
        """
        count = 0
        clock = time.monotonic
        while count < budget:
            if ingest.pending and clock() - ingest.opened_at >= flush_s:
                break
            try:
                routing_id, body = self.sock.recv_multipart(zmq.NOBLOCK)[:2]
            except zmq.Again:
                break
            except ValueError:
                ingest.drop_malformed("a forwarded message must have exactly one part")
                continue
            count += 1
            self.peers.add(routing_id)
            try:
                batch = _batch(body, routing_id)
                kind = P.FORWARD_BATCH if batch is not None else P.decode_client(body)[0]
            except Exception as exc:
                ingest.drop_malformed(f"from a forwarder: {exc}")
                continue
            if batch is not None:  # storage errors propagate to the loop, as from the local socket
                ingest.handle_forwarded(routing_id, batch)
                count += len(batch)
                continue
            if kind not in (P.FORWARD, P.PING):
                ingest.drop_malformed(f"{P.KIND_NAMES[kind]} is not accepted over TCP; only forwarded frames are")
                continue
            ingest.handle_raw(body, routing_id)
        return count

    def check(self) -> None:
        """Note failed handshakes (a forwarder with a wrong head key cannot even say who it is)."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            if event["event"] in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self.handshake_failures += 1
                self.last_failure = (
                    f"a forwarder failed the CURVE handshake at {time.strftime('%H:%M:%S')}: it does not have "
                    "this head's public key; run `trackiod keys --head=KEY` on that node with the key "
                    "`trackiod keys` prints here"
                )
                now = time.monotonic()
                if now - self._told_at > 60:  # a wrong key retries every few seconds: say it once a minute
                    self._told_at = now
                    log.warning("%s", self.last_failure)

    def status(self) -> dict[str, Any]:
        """The head's side of forwarding, for ``trackiod status``."""
        return {
            "forwarders": len(self.peers),
            "refused": self.allow.refused,
            "last_refused_key": self.allow.last_refused,
            "handshake_failures": self.handshake_failures,
            "last_error": self.last_failure,
        }

    def send(self, sid: bytes, payload: bytes) -> None:
        try:
            self.sock.send_multipart([sid, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)
        self.auth.stop()


#: How every FORWARD_BATCH begins: a msgpack array of 4, then the kind as a positive fixint.
_BATCH_HEAD = bytes([0x94, P.FORWARD_BATCH])


def _batch(body: bytes, routing_id: bytes) -> list[tuple[int, bytes]] | None:
    """The (seq, frame) pairs of a FORWARD_BATCH, None for any other message.

    Raises:
        ProtocolError: a FORWARD_BATCH that is not ``[kind, sid, seqs, frames]`` of this sender.
    """
    if body[:2] != _BATCH_HEAD:
        return None
    msg = P.unpack(body)
    if not isinstance(msg, list) or len(msg) != 4:
        raise ProtocolError("FORWARD_BATCH needs [kind, sid, seqs, frames]")
    _, sid, seqs, frames = msg
    if sid != routing_id:
        raise ProtocolError("FORWARD_BATCH: session id does not match the sending socket")
    if not isinstance(seqs, list) or not isinstance(frames, list) or len(seqs) != len(frames):
        raise ProtocolError("FORWARD_BATCH needs a list of sequence numbers and a list of frames of one length")
    for seq, frame in zip(seqs, frames):
        if type(seq) is not int or not 1 <= seq <= P.MAX_SEQ or not isinstance(frame, bytes):
            raise ProtocolError("FORWARD_BATCH: each sequence number must be a positive int, each frame bytes")
    return list(zip(seqs, frames))


# ----------------------------------------------------------------------------- the forwarding node's side
class Forwarder:
    """Sends the journal to the head and deletes what the head acknowledged; see the module docstring."""

    def __init__(self, settings: TrackiodSettings, ctx: zmq.Context[Any], store: Store) -> None:
        preflight(settings)
        self.public, self._secret = _node_keys(settings.keys_dir, "forwarder")
        self.head_key_path = settings.keys_dir / "head.public"
        self.ctx = ctx
        self.store = store
        self.window = settings.forward_window
        self.target = settings.forward
        self.sid = self._session_id()
        self.sent = 0  # highest journal id handed to ZeroMQ
        self.acked = 0  # highest journal id the head acknowledged (rows up to it are deleted at the next commit)
        self._progress = time.monotonic()
        self.forwarded = 0
        #: connecting, connected, refused (the head does not know this node's key) or handshake failed.
        self.state = "connecting"
        self.last_error: str | None = None
        self._retry_at: float | None = None
        self._retry_pause = RETRY_FIRST_S
        self._head_stamp = 0.0
        self._checked_at = 0.0
        self.sock, self.monitor = self._connect()
        log.info("forwarding to %s as session %s", self.target, self.sid.hex()[:8])

    def _connect(self) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
        """A CURVE DEALER to the head with the head key on disk now, and the monitor of its handshakes."""
        self._head_stamp = self.head_key_path.stat().st_mtime
        sock = self.ctx.socket(zmq.DEALER)
        sock.curve_publickey, sock.curve_secretkey = self.public, self._secret
        sock.curve_serverkey = self.head_key_path.read_bytes().strip()
        sock.setsockopt(zmq.ROUTING_ID, self.sid)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)  # a head that comes back gets its nodes within 0.5 s
        monitor = sock.get_monitor_socket(_EVENTS)
        sock.connect(self.target)
        return sock, monitor

    def _reconnect(self, why: str) -> None:
        """A new socket (ZeroMQ never retries a connection the head refused); resend from the last ACK."""
        log.info("reconnecting to the head at %s (%s)", self.target, why)
        self._close_sockets()
        self.sock, self.monitor = self._connect()
        self.sent = self.acked
        self._progress = time.monotonic()
        self._retry_at = None

    def _session_id(self) -> bytes:
        """The forwarder's session id, kept in the database so its sequence continues after a restart."""
        row = self.store.conn.execute("SELECT value FROM forward_state WHERE name='sid'").fetchone()
        if row is not None:
            return bytes(row[0])
        sid = os.urandom(P.SESSION_ID_BYTES)
        self.store.conn.execute("INSERT INTO forward_state(name, value) VALUES ('sid', ?)", (sid,))
        return sid

    def check(self) -> None:
        """Follow the handshake: say loudly when the head refuses us, and retry when it may have been fixed."""
        now = time.monotonic()
        while self.monitor.poll(0):
            self._on_event(recv_monitor_message(self.monitor), now)
        if self._retry_at is not None and now >= self._retry_at:
            self._reconnect(f"after '{self.state}'")
        elif now - self._checked_at >= 1.0:
            self._checked_at = now
            try:
                changed = self.head_key_path.stat().st_mtime != self._head_stamp
            except OSError:
                changed = False
            if changed:  # `trackiod keys --head=KEY` ran: a wrong key may have been fixed
                self._reconnect("the head's key changed")

    def _on_event(self, event: Mapping[str, Any], now: float) -> None:
        kind = event["event"]
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self.state != "connected":
                log.info("connected to the head at %s", self.target)
            self.state, self.last_error, self._retry_pause = "connected", None, RETRY_FIRST_S
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            error = (
                f"the head at {self.target} refused this node's key {self.public.decode()}: run "
                f"`trackiod keys --authorize={self.public.decode()}` on the head; this node retries on its own"
            )
            self._fail("refused", error)
            self._retry_at = now + self._retry_pause
            self._retry_pause = min(self._retry_pause * 2, RETRY_MAX_S)
        elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self._fail(
                "handshake failed",
                f"the CURVE handshake with {self.target} failed: the head's public key in {self.head_key_path} is "
                "probably not the head's; run `trackiod keys --head=KEY` with the key `trackiod keys` prints on the "
                "head (this node picks it up on its own)",
            )
        elif kind == zmq.EVENT_DISCONNECTED:
            # What was in flight may be lost with the connection (a head killed, a network cut): resend from the
            # last ACK once connected again; the head drops what it already committed.
            self.sent = self.acked
            self._progress = now
            if self.state == "connected":
                self.state = "connecting"

    def _fail(self, state: str, error: str) -> None:
        if self.last_error != error:
            log.error("forwarding: %s", error)
        self.state, self.last_error = state, error

    def pump(self) -> None:
        """Send journal rows after the last one sent, in batches, up to the window of unacknowledged rows."""
        self.check()
        now = time.monotonic()
        if self.sent > self.acked and now - self._progress > RESEND_AFTER_S:
            self.sent = self.acked  # go-back-N: the head lost the connection or the frames; it dedupes resends
            self._progress = now
        room = self.window - (self.sent - self.acked)
        while room > 0:
            rows: list[Any] = self.store.conn.execute(
                "SELECT id, frame FROM forward_journal WHERE id > ? ORDER BY id LIMIT ?",
                (max(self.sent, self.acked), min(room, BATCH_ROWS)),
            ).fetchall()
            if not rows:
                return
            seqs: list[int] = []
            frames: list[bytes] = []
            size = 0
            for row_id, frame in rows:
                seqs.append(int(row_id))
                frames.append(bytes(frame))
                size += len(frame)
                if size >= BATCH_BYTES:
                    break
            try:
                self.sock.send(P.pack([P.FORWARD_BATCH, self.sid, seqs, frames]), zmq.NOBLOCK)
            except zmq.Again:
                return
            if self.sent <= self.acked:  # nothing was in flight: the wait for an ACK starts now, not at the last one
                self._progress = time.monotonic()
            self.sent = seqs[-1]
            room -= len(seqs)

    def receive(self) -> None:
        """Take the head's ACKs and NACKs."""
        while True:
            try:
                msg = P.decode_daemon(self.sock.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            except Exception:
                continue
            if msg[0] == P.ACK and int(msg[1]) > self.acked:
                self.forwarded += int(msg[1]) - self.acked
                self.acked = int(msg[1])
                self.sent = max(self.sent, self.acked)
                self._progress = time.monotonic()
            elif msg[0] == P.NACK:
                self.acked = max(self.acked, int(msg[1]) - 1)
                self.sent = self.acked
                self._progress = time.monotonic()

    def trim(self) -> None:
        """Delete acknowledged rows (inside the writer's open transaction)."""
        self.store.conn.execute("DELETE FROM forward_journal WHERE id <= ?", (self.acked,))

    def backlog(self) -> int:
        row = self.store.conn.execute("SELECT COUNT(*) FROM forward_journal").fetchone()
        return int(row[0]) if row else 0

    def status(self) -> dict[str, Any]:
        """This node's side of forwarding, for ``trackiod status``."""
        return {
            "to": self.target,
            "state": self.state,
            "last_error": self.last_error,
            "forwarded": self.forwarded,
            "acked": self.acked,
            "backlog": self.backlog(),
        }

    def _close_sockets(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)

    def close(self) -> None:
        self._close_sockets()
