"""Hostile client frames, and an in-process rig that feeds them to a real Ingest over a real SQLite file.

Used by tests/ingest/test_fuzz_frames.py (hypothesis) and tests/ingest/test_bad_frames.py (a real daemon), and by the
standalone harness scripts/fuzz_frames.py. Nothing is faked: the rig is the daemon's own Store, Ingest and
Attachments, built by the daemon's build_writer, on a temporary TRACKIOD_HOME; only the socket is left out
(``send`` collects the daemon's replies).
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import msgpack

from trackio_shim import protocol as P
from trackio_shim.errors import ProtocolError

#: Per-kind field lists of a well-formed sequenced frame (after [kind, sid, seq]); ``H`` is the run handle.
H = 1


def pack(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def good_fields(kind: int, step: int = 0) -> list[Any]:
    """The fields of one well-formed frame of ``kind`` for handle ``H`` (the rig's run)."""
    now = 1_700_000_000.0 + step
    return {
        P.LOG: [H, step, now, {"loss": 0.5, "acc": 1, "note": "ok", "nested": {"a": 1.0}}],
        P.LOG_CONTEXT: [H, step, now, {"loss": 0.25}, {"split": "val"}],
        P.CONFIG: [H, {"lr": 0.1, "layers": [1, 2]}],
        P.SUMMARY: [H, {"best": 0.9}],
        P.DEFINE_METRIC: [H, {"name": "loss", "summary": ["min"], "step_metric": None, "hidden": False}],
        P.MEDIA: [
            H,
            step,
            now,
            {
                "hist": {"_type": "histogram", "values": [1, 2], "bins": [0.0, 0.5, 1.0]},
                "arr": {"_type": "array", "dtype": "uint8", "shape": [2], "data": b"\x01\x02"},
                "page": {"_type": "html", "html": "<b>hi</b>"},
                "tab": {"_type": "table", "columns": ["a"], "data": [[1], ["x"]]},
            },
        ],
        P.ALERT: [H, {"title": "t", "text": "x", "level": "INFO", "step": step, "timestamp": now}],
        P.ARTIFACT_USE: [H, {"version_id": 1}],
        P.RUN_FINISH: [H, 0, now],
    }[kind]


#: Kinds the fuzzers mutate, and those they leave alone: RUN_START and SESSION change who the rig is (the
#: hypothesis tests cover them separately), SAVE_FILES and ARTIFACT_LOG make the daemon read files the
#: sender names (docs/security.md's concern, not a decoder's), FORWARD is covered as a wrapper below.
FUZZED_KINDS = (P.LOG, P.LOG_CONTEXT, P.CONFIG, P.SUMMARY, P.DEFINE_METRIC, P.MEDIA, P.ALERT, P.ARTIFACT_USE)

NASTY_STRINGS = (
    "",
    "\x00",
    "a\x00b",
    "../../etc/passwd",
    "/abs/path",
    "..",
    "\\..\\win",
    "x" * 513,
    "_step",
    "_runtime",
    "ключ/名前/🙂",
    "\u202e\u0301",
    "a/" * 40,
    "\ufeff",
    "%s%n",
)


def nasty_value(rng: random.Random, depth: int = 0) -> Any:
    """A value of a type a field may not expect: numbers at the edges, odd strings, bytes, containers."""
    choice = rng.randrange(14 if depth < 6 else 9)
    if choice == 0:
        return rng.choice([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324])
    if choice == 1:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**64 - 1, True, False])
    if choice == 2:
        return rng.choice(NASTY_STRINGS)
    if choice == 3:
        return os.urandom(rng.randrange(0, 40))
    if choice == 4:
        return None
    if choice == 5:
        return msgpack.ExtType(rng.randrange(0, 127), os.urandom(rng.randrange(0, 8)))
    if choice == 6:
        return rng.random() * 10 ** rng.randrange(-10, 10)
    if choice == 7:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(0, 12)))
    if choice == 8:
        return rng.randrange(-1000, 1000)
    if choice in (9, 10):
        return {nasty_key(rng): nasty_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))}
    if choice == 11:
        return [nasty_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    if choice == 12:
        return deep(rng.randrange(10, 500), rng.choice(["dict", "list"]))
    return {"_type": rng.choice(["histogram", "array", "image", "table", "html", "nope", None])}


def nasty_key(rng: random.Random) -> Any:
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice(NASTY_STRINGS)
    if choice == 1:
        return rng.choice([0, 1.5, -7, True, None, b"bytes"])
    if choice == 2:
        return "k" * rng.choice([1, 512, 513, 5000])
    return f"key{rng.randrange(50)}"


def deep(levels: int, shape: str = "dict") -> Any:
    """A value nested ``levels`` deep (msgpack's packer refuses more than 511 levels; see deep_frame)."""
    value: Any = 1.0
    for _ in range(levels):
        value = {"d": value} if shape == "dict" else [value]
    return value


def deep_frame(kind: int, sid: bytes, seq: int, levels: int, shape: str = "dict") -> bytes:
    """A frame of ``kind`` whose last field holds ``{"deep": <levels of nesting>}``, encoded by hand.

    Built byte by byte because the packer stops at 511 levels and a hostile client need not; the daemon's
    unpacker stops at its own limit (about 1,000 levels) and everything below that reaches ingest.
    """
    fields = good_fields(kind, seq)[:-1]
    nest = (b"\x81\xa1d" if shape == "dict" else b"\x91") * levels
    body = b"".join(msgpack.packb(f, use_bin_type=True) for f in [kind, sid, seq, *fields])
    count = 3 + len(fields) + 1
    assert count < 16
    return bytes([0x90 | count]) + body + b"\x81\xa4deep" + nest + msgpack.packb(1.0)


def mutate_fields(rng: random.Random, kind: int, fields: list[Any]) -> list[Any]:
    """Replace, drop, add or nest one or more of a frame's fields, or one entry of its dict payloads."""
    fields = list(fields)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(fields))
        if op == 0:
            fields[i] = nasty_value(rng)
        elif op == 1 and isinstance(fields[i], dict) and fields[i]:
            payload = dict(fields[i])
            key = rng.choice(list(payload))
            payload[key] = nasty_value(rng)
            fields[i] = payload
        elif op == 2 and isinstance(fields[i], dict):
            payload = dict(fields[i])
            payload[nasty_key(rng)] = nasty_value(rng)
            fields[i] = payload
        elif op == 3 and isinstance(fields[i], dict) and fields[i]:
            payload = dict(fields[i])
            inner = payload[rng.choice(list(payload))]
            if isinstance(inner, dict) and inner:
                inner = dict(inner)
                inner[rng.choice(list(inner))] = nasty_value(rng)
                payload[rng.choice(list(payload))] = inner
            fields[i] = payload
        elif op == 4:
            fields = fields[:-1] if rng.random() < 0.5 else [*fields, nasty_value(rng)]
            if not fields:
                fields = [nasty_value(rng)]
    return fields


def huge_header(rng: random.Random) -> bytes:
    """A few bytes whose msgpack header declares an enormous string, binary, array or map."""
    n = rng.choice([2**32 - 1, 2**31, 10**9, 65_536])
    header = rng.choice([b"\xdb", b"\xc6", b"\xdd", b"\xdf"])  # str32, bin32, array32, map32
    return b"\x97\x03" + header + n.to_bytes(4, "big") + os.urandom(rng.randrange(0, 16))


def consumed(raw: bytes, sid: bytes, seq: int) -> bool:
    """Whether the daemon takes ``raw`` as the session's sequenced frame ``seq`` (a flipped byte may change it)."""
    from trackiod.ingest.guard import decode_lenient, frame_header

    try:
        kind, frame_sid, frame_seq, _ = P.decode_client(raw)
    except ProtocolError:
        # An undecodable frame whose header names the session still consumes its sequence number (issue 18).
        msg = decode_lenient(raw)
        try:
            kind, frame_sid, frame_seq, _ = P.check_client(msg)
        except ProtocolError:
            if msg is not None:
                return False
            header = frame_header(raw)
            if header is None:
                return False
            kind, frame_sid, frame_seq = header
    return frame_sid == sid and kind in P.SEQUENCED_KINDS and frame_seq == seq


def random_frame(rng: random.Random, sid: bytes, seq: int) -> bytes:
    """One hostile frame from session ``sid``: raw noise, a damaged encoding, or a frame with bad fields."""
    choice = rng.randrange(10)
    kind = rng.choice(FUZZED_KINDS)
    good = pack(kind, sid, seq, *good_fields(kind, seq))
    if choice == 0:
        return os.urandom(rng.randrange(0, 200))
    if choice == 1:
        return good[: rng.randrange(0, len(good))]
    if choice == 2:
        raw = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if choice == 3:
        return huge_header(rng)
    if choice == 4:
        return pack(kind, sid, seq, *[nasty_value(rng) for _ in good_fields(kind)])
    if choice == 5:
        inner = pack(kind, sid, seq, *mutate_fields(rng, kind, good_fields(kind, seq)))
        return pack(P.FORWARD, sid, seq, inner if rng.random() < 0.8 else nasty_value(rng))
    return pack(kind, sid, seq, *mutate_fields(rng, kind, good_fields(kind, seq)))


class IngestRig:
    """A real Store, Ingest and Attachments on ``home``, with one session that has started run handle ``H``."""

    def __init__(self, home: Path) -> None:
        from trackio_shim.settings import TrackiodSettings
        from trackiod.daemon.writer import build_writer
        from trackiod.ingest.ingest import IngestHooks

        settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(home)})
        settings.ensure_dirs()
        self.settings = settings
        self.sent: list[tuple[bytes, tuple[Any, ...]]] = []
        writer = build_writer(settings, IngestHooks(send=self._send), boot_id=b"")
        self.store, self.ingest, self.attachments = writer.store, writer.ingest, writer.attachments
        self.sid = os.urandom(16)
        self.seq = 0
        self.feed_fields(P.SESSION, {"version": P.PROTOCOL_VERSION, "pid": os.getpid(), "host": "fuzz"})
        # With a request id, as init() sends it: the daemon commits inside the frame and replies.
        self.feed_fields(P.RUN_START, H, {"project": "fuzz", "id": "target", "resume": "allow", "req": 1})
        assert self.ingest.commit()
        assert any(m[0] == P.REPLY and m[2] for _, m in self.sent), self.sent

    @property
    def run_id(self) -> int:
        return int(self.ingest.runs.handles[(self.sid, H)])

    def series(self, key: str) -> list[float]:
        """The values of one numeric series of the rig's run, in step order."""
        from trackiod.read.runs import run_keys
        from trackiod.read.series import read_series

        entry = run_keys(self.store.conn, self.run_id).get(key)
        return [] if entry is None else list(read_series(self.store.conn, self.run_id, entry[0])[2])

    def notices(self) -> list[str]:
        return [str(message[2]) for _, message in self.sent if message[0] == P.NOTICE]

    def _send(self, sid: bytes, message: tuple[Any, ...]) -> None:
        if len(self.sent) < 10_000:
            self.sent.append((sid, message))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def feed_fields(self, kind: int, *fields: Any) -> None:
        self.ingest.handle_raw(pack(kind, self.sid, self.next_seq(), *fields), self.sid)

    def feed(self, raw: bytes) -> None:
        self.ingest.handle_raw(raw, self.sid)

    def stored(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every user-visible row (sessions' watermarks and the runs' own timestamps left out)."""
        conn = self.store.conn
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            if name not in ("sessions", "schema_version", "runs") and not name.startswith("sqlite_")
        ]
        out = {table: sorted(map(repr, conn.execute(f"SELECT * FROM {table}"))) for table in tables}
        out["runs"] = sorted(
            map(repr, conn.execute("SELECT id, run_key, config, summary, metric_defs, state, last_step FROM runs"))
        )
        return out  # type: ignore[return-value]

    def media_files(self) -> set[str]:
        root = self.settings.media_dir
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()

    def close(self) -> None:
        self.attachments.stop(timeout=5.0)
        self.store.close()
