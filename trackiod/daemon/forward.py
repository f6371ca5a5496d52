"""Several nodes: a node's daemon forwards what it committed to a head daemon over TCP with CURVE (docs/forwarding.md).

The forwarding daemon journals every sequenced frame it accepts in ``forward_journal``, in the same
transaction as the data, so the journal is exactly what is committed locally and survives kill -9. The
:class:`Forwarder` (driven by the daemon's main loop, so the single writer stays single) sends journal rows
to the head as ``FORWARD`` frames over a CURVE DEALER: the journal id is the outer sequence number of the
forwarder's own session, and acknowledged rows are deleted. The head's :class:`Listener` (a CURVE ROUTER,
ZAP-authenticated against authorised public keys) applies each inner frame as if its session had sent it,
deduplicated by that session's watermark, and acknowledges the outer sequence after commit: end to end,
acknowledged means committed on the head, and a resend is dropped exactly when it was already stored.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from trackio_shim import protocol as P
from trackio_shim.errors import DaemonError
from trackio_shim.settings import TrackiodSettings
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.forward")

RESEND_AFTER_S = 2.0


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


# ----------------------------------------------------------------------------- the head's side
class _AllowList:
    """ZAP CURVE callback: a client may connect only with an authorised public key (re-read on change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self._keys: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        stamp = self.path.stat().st_mtime if self.path.exists() else None
        if stamp != self._stamp:
            self._stamp = stamp
            self._keys = set(self.path.read_bytes().split()) if self.path.exists() else set()
        # pyzmq hands the key over Z85-encoded already; raw 32-byte keys are encoded for safety.
        allowed = (zmq.utils.z85.encode(key) if len(key) == 32 else key) in self._keys
        if not allowed:
            log.warning("refused a forwarder with an unknown CURVE key")
        return allowed


class Listener:
    """The head's TCP ROUTER: CURVE server, clients authorised by public key; refuses to start without keys."""

    def __init__(self, settings: TrackiodSettings, ctx: zmq.Context[Any]) -> None:
        public, secret = _node_keys(settings.keys_dir, "TCP listener")
        authorized = settings.keys_dir / "authorized"
        if not authorized.exists() or not authorized.read_bytes().split():
            raise DaemonError(
                f"a TCP listener needs authorised forwarder keys and {authorized} lists none; "
                "run `trackiod keys --authorize=KEY` with each forwarding node's public key"
            )
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=_AllowList(authorized))
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.curve_server = True
        self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 4 * settings.max_frame_bytes + 1024)
        self.sock.bind(settings.listen)
        self.peers: set[bytes] = set()
        log.info("listening for forwarders on %s (CURVE)", settings.listen)

    def receive(self, ingest: Any, budget: int) -> int:
        """Apply FORWARD and PING frames from forwarders; anything else from the network is dropped."""
        count = 0
        while count < budget:
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
                kind, _, _, _ = P.decode_client(body)
            except Exception as exc:
                ingest.drop_malformed(f"from a forwarder: {exc}")
                continue
            if kind not in (P.FORWARD, P.PING):
                ingest.drop_malformed(f"{P.KIND_NAMES[kind]} is not accepted over TCP; only forwarded frames are")
                continue
            ingest.handle_raw(body, routing_id)
        return count

    def send(self, sid: bytes, payload: bytes) -> None:
        try:
            self.sock.send_multipart([sid, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        self.sock.close(linger=0)
        self.auth.stop()


# ----------------------------------------------------------------------------- the forwarding node's side
class Forwarder:
    """Sends the journal to the head and deletes what the head acknowledged; see the module docstring."""

    def __init__(self, settings: TrackiodSettings, ctx: zmq.Context[Any], store: Store) -> None:
        public, secret = _node_keys(settings.keys_dir, "forwarder")
        head_key = settings.keys_dir / "head.public"
        if not head_key.exists():
            raise DaemonError(f"forwarding needs the head's public key: run `trackiod keys --head=KEY` ({head_key})")
        self.store = store
        self.window = settings.forward_window
        self.sid = self._session_id()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
        self.sock.curve_serverkey = head_key.read_bytes().strip()
        self.sock.setsockopt(zmq.ROUTING_ID, self.sid)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self.sock.connect(settings.forward)
        self.target = settings.forward
        self.sent = 0  # highest journal id handed to ZeroMQ
        self.acked = 0  # highest journal id the head acknowledged (rows up to it are deleted at the next commit)
        self._progress = time.monotonic()
        self.forwarded = 0
        log.info("forwarding to %s as session %s", self.target, self.sid.hex()[:8])

    def _session_id(self) -> bytes:
        """The forwarder's session id, kept in the database so its sequence continues after a restart."""
        row = self.store.conn.execute("SELECT value FROM forward_state WHERE name='sid'").fetchone()
        if row is not None:
            return bytes(row[0])
        sid = os.urandom(P.SESSION_ID_BYTES)
        self.store.conn.execute("INSERT INTO forward_state(name, value) VALUES ('sid', ?)", (sid,))
        return sid

    def pump(self) -> None:
        """Send journal rows after the last one sent, up to the window of unacknowledged rows."""
        now = time.monotonic()
        if self.sent > self.acked and now - self._progress > RESEND_AFTER_S:
            self.sent = self.acked  # go-back-N: the head lost the connection or the frames; it dedupes resends
            self._progress = now
        room = self.window - (self.sent - self.acked)
        if room <= 0:
            return
        rows: list[Any] = self.store.conn.execute(
            "SELECT id, frame FROM forward_journal WHERE id > ? ORDER BY id LIMIT ?", (max(self.sent, self.acked), room)
        ).fetchall()
        for row_id, frame in rows:
            try:
                self.sock.send(P.pack([P.FORWARD, self.sid, int(row_id), bytes(frame)]), zmq.NOBLOCK)
            except zmq.Again:
                return
            self.sent = int(row_id)

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

    def close(self) -> None:
        self.sock.close(linger=0)
