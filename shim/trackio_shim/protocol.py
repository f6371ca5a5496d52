"""The trackiod wire protocol: the single source of truth for both sides (docs/protocol.md explains it).

Every message is one ZeroMQ frame holding one msgpack array whose first element is the message kind. Since
version 2 a client may coalesce frames: a BATCH message carries many frames, each decoded exactly as if it had
come alone (:func:`batch_frames`), so one bad frame never costs its neighbours.
Clients use DEALER sockets whose routing id is their 16-byte session id; the daemon uses one ROUTER.

Sequenced messages (kinds below 32) are durable: each carries the producer session id and a per-session
sequence number starting at 1. The daemon stores them, commits, then sends ``ACK(highest committed seq)``.
The per-session watermark is written in the same transaction as the data, so a resend after any crash is
dropped exactly when it was already committed. Control messages (32-63) and daemon replies (64+) are not
stored and carry no sequence number.
"""

from __future__ import annotations

from typing import Any

import msgpack

from trackio_shim.errors import ProtocolError

PROTOCOL_VERSION = 2
#: Versions this build of the daemon can ingest (2 added BATCH; a version-1 session never sends one).
SUPPORTED_VERSIONS = frozenset({1, 2})

# --- sequenced, client -> daemon: [kind, sid, seq, *fields] ---
SESSION = 1  # info: {version, pid, host, started, argv, python, cuda}
RUN_START = 2  # handle, params: {project, id, name, resume, config, tags, ..., req}
LOG = 3  # handle, step, timestamp, data
CONFIG = 4  # handle, items (merged into the run's config)
SUMMARY = 5  # handle, items (explicit summary values)
DEFINE_METRIC = 6  # handle, spec: {name, step_metric, summary, hidden, goal}
RUN_FINISH = 7  # handle, exit_code, timestamp
MEDIA = 8  # handle, step, timestamp, items: {key: {"_type": ..., ...}} (rich values: histograms, images, ...)
# 9..23 are reserved (tensors and media 9..15, system sampling 16..23).
ALERT = 24  # handle, alert: {title, text, level, wait_duration, step, timestamp, webhook_url}
SAVE_FILES = 25  # handle, spec: {pattern, base, policy, matched}
ARTIFACT_LOG = 26  # handle, manifest: {name, type, description, metadata, aliases, entries, log_id}
ARTIFACT_USE = 27  # handle, ref: {version_id, project, name}
LOG_CONTEXT = 28  # handle, step, timestamp, data, context (a LOG whose series carry a context)
FORWARD = 29  # frame: one sequenced frame another daemon committed, relayed to a head daemon (docs/forwarding.md)
TENSORBOARD = 30  # handle, spec: {logdir, prefix, since} (the daemon reads that directory's event files into the run)
#: [FORWARD_BATCH, sid, seqs, frames]: many FORWARDs of one forwarder in one message, over TCP to a head only;
#: the head's listener unpacks it into FORWARD(seqs[i], frames[i]) (docs/forwarding.md). Not a kind a client
#: sends to its own daemon: decode_client() refuses it.
FORWARD_BATCH = 31

# --- control, client -> daemon: [kind, sid, *fields] ---
PING = 33  # protocol version; the daemon answers PONG, or REFUSE if it cannot serve that version
SPOOL_READY = 34  # spool file path (a hint: ingest it now)
RESYNC = 35  # first seq the client still holds; older ones are gone for good
QUERY = 36  # req_id, what, args
BATCH = 37  # frames: a list of whole client frames (bin), applied in order as if each had come alone

# --- daemon -> client: [kind, *fields] ---
REFUSE = 65  # reason
ACK = 66  # seq
NACK = 67  # expected seq
REPLY = 68  # req_id, ok, body
NOTICE = 69  # level, text
PONG = 70  # boot_id, committed seq of the asking session (0 if unknown)

SEQUENCED_KINDS = frozenset(
    {
        SESSION,
        RUN_START,
        LOG,
        CONFIG,
        SUMMARY,
        DEFINE_METRIC,
        RUN_FINISH,
        MEDIA,
        ALERT,
        SAVE_FILES,
        ARTIFACT_LOG,
        ARTIFACT_USE,
        LOG_CONTEXT,
        FORWARD,
        TENSORBOARD,
    }
)
CONTROL_KINDS = frozenset({PING, SPOOL_READY, RESYNC, QUERY, BATCH})

# Field count after [kind, sid, seq] (sequenced) or after [kind, sid] (control); -1 means "at least 0".
_ARITY = {
    SESSION: 1,
    RUN_START: 2,
    LOG: 4,
    CONFIG: 2,
    SUMMARY: 2,
    DEFINE_METRIC: 2,
    RUN_FINISH: 3,
    MEDIA: 4,
    ALERT: 2,
    SAVE_FILES: 2,
    ARTIFACT_LOG: 2,
    ARTIFACT_USE: 2,
    LOG_CONTEXT: 5,
    FORWARD: 1,
    TENSORBOARD: 2,
    PING: 1,
    SPOOL_READY: 1,
    RESYNC: 1,
    QUERY: 3,
    BATCH: 1,
}

SESSION_ID_BYTES = 16
KIND_NAMES = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and not name.startswith(("PROTOCOL", "SESSION_ID"))
}

#: Largest sequence number (SQLite's INTEGER); beyond it a frame is malformed, not a watermark to store.
MAX_SEQ = 2**63 - 1

# --- the ``error`` field of a failed REPLY body ({error, message}); the shim raises one exception per code ---
ERROR_EXISTS = "exists"  # RUN_START with resume="never" for a run that exists
ERROR_NOT_FOUND = "not_found"  # RUN_START with resume="must" for a run that does not
ERROR_INVALID = "invalid"  # RUN_START with a project, id or name the daemon cannot store
ERROR_REFUSED = "refused"  # the daemon refused the session (REFUSE) while the request waited

#: Spool files, in the spool directory: ``<session id hex>-<first seq, 12 digits>.spool``.
SPOOL_SUFFIX = ".spool"


def spool_name(sid: bytes, first_seq: int) -> str:
    """The name of the spool file of session ``sid`` whose first frame has sequence number ``first_seq``."""
    return f"{sid.hex()}-{first_seq:012d}{SPOOL_SUFFIX}"


def spool_glob(sid: bytes | None = None) -> str:
    """A glob for the spool files of session ``sid``, or of every session."""
    return f"{sid.hex()}-*{SPOOL_SUFFIX}" if sid is not None else f"*{SPOOL_SUFFIX}"


def pack(message: tuple[Any, ...] | list[Any]) -> bytes:
    """Encode one message. Hot paths keep their own ``msgpack.Packer`` instead."""
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


def unpack(raw: bytes, max_len: int | None = None) -> Any:
    """Decode one frame's msgpack payload, bounding container sizes (defence against hostile frames).

    Raises:
        ProtocolError: the bytes are not one complete msgpack value.
    """
    limit = len(raw) if max_len is None else max_len
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=False,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=limit,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        detail = str(exc) or ("nested too deeply" if isinstance(exc, msgpack.StackError) else "no detail")
        raise ProtocolError(f"undecodable frame ({type(exc).__name__}: {detail})") from None


def decode_client(raw: bytes) -> tuple[int, bytes, int, list[Any]]:
    """Decode and shape-check a client message.

    Returns:
        ``(kind, session_id, seq, fields)``; ``seq`` is 0 for control messages.

    Raises:
        ProtocolError: the frame is not a well-formed client message; the text says which part is wrong.
    """
    return check_client(unpack(raw))


def check_client(msg: Any) -> tuple[int, bytes, int, list[Any]]:
    """Shape-check an already decoded client message (from a socket or a spool file); see decode_client."""
    if not isinstance(msg, list) or len(msg) < 2:
        raise ProtocolError("frame is not a msgpack array of at least [kind, session_id]")
    kind, sid = msg[0], msg[1]
    if type(kind) is not int or kind not in _ARITY:
        raise ProtocolError(f"unknown message kind {kind!r}")
    if not isinstance(sid, bytes) or len(sid) != SESSION_ID_BYTES:
        raise ProtocolError(f"{KIND_NAMES[kind]}: session id must be {SESSION_ID_BYTES} bytes")
    if kind in SEQUENCED_KINDS:
        if len(msg) != 3 + _ARITY[kind]:
            raise ProtocolError(f"{KIND_NAMES[kind]}: expected {3 + _ARITY[kind]} elements, got {len(msg)}")
        seq = msg[2]
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            raise ProtocolError(f"{KIND_NAMES[kind]}: sequence number must be a positive int below 2**63, got {seq!r}")
        return kind, sid, seq, msg[3:]
    if len(msg) != 2 + _ARITY[kind]:
        raise ProtocolError(f"{KIND_NAMES[kind]}: expected {2 + _ARITY[kind]} elements, got {len(msg)}")
    return kind, sid, 0, msg[2:]


def batch_frames(fields: list[Any]) -> list[Any]:
    """The frames a BATCH message carries (its decoded ``fields``), for the receiver to decode one by one.

    The one place that unpacks a coalesced message: whoever receives client messages calls it, then handles
    each frame exactly as a frame that came alone (its own :func:`decode_client`, checks and sequence number;
    an element that is not bytes, or is itself a BATCH, is one malformed frame).

    Raises:
        ProtocolError: the field is not a list.
    """
    frames = fields[0]
    if type(frames) is not list:
        raise ProtocolError("BATCH: expected a list of frames (msgpack bin)")
    return frames


def decode_daemon(raw: bytes) -> list[Any]:
    """Decode a daemon -> client message; the client ignores (and counts) anything malformed.

    Raises:
        ProtocolError: the frame is not a msgpack array starting with a known daemon kind.
    """
    msg = unpack(raw)
    if not isinstance(msg, list) or not msg or msg[0] not in KIND_NAMES or msg[0] < REFUSE:
        raise ProtocolError("not a daemon message")
    return msg
