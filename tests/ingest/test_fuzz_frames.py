"""Hostile frames in process: the real decoder, Ingest, Attachments and Store on a temporary SQLite file.

Properties (hypothesis, profile "ci" in conftest.py; HYPOTHESIS_PROFILE=deep for long runs):
- decoding any bytes either gives a well-shaped message or raises ProtocolError, and declared lengths never
  make the decoder allocate what the frame does not hold;
- no frame makes Ingest raise or a commit fail, and a frame is all or nothing: a frame reported as malformed
  leaves the database and the media folder exactly as they were;
- the session goes on: a good frame after any number of bad ones is stored.
tests/ingest/test_bad_frames.py does the same against a real daemon process over ZeroMQ.
"""

from __future__ import annotations

import math
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile_frames import FUZZED_KINDS, H, IngestRig, deep_frame, good_fields, pack
from trackio_shim import protocol as P
from trackio_shim.errors import ProtocolError

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

keys = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "\x00", "a\x00b", "_step", "../../etc/passwd", "x" * 513, "🙂/名前"]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.binary(max_size=8),
    st.floats(allow_nan=True),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4), st.builds(dict, _type=inner)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestRig]:
    rig = IngestRig(tmp_path_factory.mktemp("fuzz-home"))
    yield rig
    rig.close()


def apply_one(rig: IngestRig, raw: bytes) -> None:
    """Feed one frame and commit; assert nothing raised, the commit held, and a rejected frame left no trace."""
    before, files, malformed = rig.stored(), rig.media_files(), rig.ingest.counters.malformed
    rig.feed(raw)
    assert rig.ingest.commit(), rig.ingest.counters.last_error
    assert not rig.ingest._in_txn
    if rig.ingest.counters.malformed > malformed:
        assert rig.stored() == before, f"a rejected frame left rows behind: {rig.ingest.counters.last_error}"
        assert rig.media_files() == files, "a rejected frame left media files behind"
    rig.seq = max(rig.seq, rig.ingest.accepted.get(rig.sid, 0))


def assert_still_served(rig: IngestRig) -> None:
    step = rig.next_seq()
    rig.ingest.handle_raw(pack(P.LOG, rig.sid, step, H, step, 1.0, {"alive": float(step)}), rig.sid)
    assert rig.ingest.commit()
    assert rig.series("alive")[-1] == float(step)


# ---------------------------------------------------------------------------------------------- the decoder
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_protocol_error(raw: bytes) -> None:
    try:
        kind, sid, seq, fields = P.decode_client(raw)
    except ProtocolError:
        return
    assert kind in P.KIND_NAMES and len(sid) == P.SESSION_ID_BYTES and isinstance(fields, list)
    assert 0 <= seq <= P.MAX_SEQ


@given(st.sampled_from(FUZZED_KINDS), st.data())
def test_damaged_encodings_decode_or_raise_protocol_error(kind: int, data: st.DataObject) -> None:
    good = pack(kind, os.urandom(16), 1, *good_fields(kind))
    cut = data.draw(st.integers(0, len(good)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), max_size=4))
    raw = bytearray(good[:cut] if data.draw(st.booleans()) else good)
    for at, byte in flips:
        if at < len(raw):
            raw[at] = byte
    try:
        P.decode_client(bytes(raw))
    except ProtocolError:
        pass


@pytest.mark.parametrize("header", [b"\xdb", b"\xc6", b"\xdd", b"\xdf", b"\xc9"])  # str32 bin32 array32 map32 ext32
def test_huge_declared_lengths_are_refused_without_allocating(header: bytes) -> None:
    tracemalloc.start()
    try:
        for declared in (2**32 - 1, 2**31, 10**9, 1 << 20):
            raw = b"\x97\x03" + header + declared.to_bytes(4, "big") + b"\x00" * 64
            with pytest.raises(ProtocolError):
                P.decode_client(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"decoding a 70-byte frame allocated {peak} bytes"


def test_nesting_beyond_the_decoder_limit_is_refused_with_a_reason() -> None:
    with pytest.raises(ProtocolError, match="nested too deeply"):
        P.decode_client(deep_frame(P.CONFIG, os.urandom(16), 1, 5000))


def test_lone_surrogates_and_invalid_utf8_are_undecodable() -> None:
    good = pack(P.LOG, os.urandom(16), 1, H, 0, 1.0, {"key": 1.0})
    for bad in (b"\xed\xa0\x80", b"\xff\xfe\x00"):  # a UTF-8-encoded lone surrogate, then plain garbage
        raw = good.replace(b"\xa3key", b"\xa3" + bad)
        with pytest.raises(ProtocolError, match="undecodable"):
            P.decode_client(raw)


def test_sequence_numbers_beyond_sqlite_integers_are_malformed() -> None:
    with pytest.raises(ProtocolError, match="sequence number"):
        P.decode_client(pack(P.LOG, os.urandom(16), 2**63, H, 0, 1.0, {"x": 1.0}))


# ---------------------------------------------------------------------------------------------- Ingest
@FIXTURE_OK
@given(kind=st.sampled_from(FUZZED_KINDS), data=st.data())
def test_any_field_of_any_kind_can_be_anything(rig: IngestRig, kind: int, data: st.DataObject) -> None:
    fields = good_fields(kind, rig.seq + 1)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(fields) - 1))
        if isinstance(fields[at], dict) and fields[at] and data.draw(st.booleans()):
            payload = dict(fields[at])
            payload[data.draw(st.sampled_from(sorted(payload, key=str)) | keys)] = data.draw(values)
            fields[at] = payload
        else:
            fields[at] = data.draw(values)
    apply_one(rig, pack(kind, rig.sid, rig.seq + 1, *fields))
    assert_still_served(rig)


@FIXTURE_OK
@given(frames=st.lists(st.tuples(st.sampled_from(FUZZED_KINDS), values), min_size=1, max_size=6))
def test_forwarded_and_wrapped_garbage(rig: IngestRig, frames: list[tuple[int, Any]]) -> None:
    for kind, value in frames:
        inner = pack(kind, rig.sid, rig.seq + 1, *good_fields(kind)[:-1], value)
        apply_one(rig, pack(P.FORWARD, rig.sid, rig.seq + 1, inner))
        apply_one(rig, pack(P.FORWARD, rig.sid, rig.seq + 1, value))
    assert_still_served(rig)


WRONG = [None, True, -1, 2**64 - 1, math.nan, math.inf, "", "x" * 600, b"\x00", [1, [2]], {"a": {1: 2}}, {b"k": 1}]


@pytest.mark.parametrize("kind", [*FUZZED_KINDS, P.RUN_FINISH, P.SESSION, P.RUN_START])
def test_every_field_of_every_kind_with_every_wrong_type(tmp_path: Path, kind: int) -> None:
    rig = IngestRig(tmp_path)
    try:
        base = (
            [{"version": 1, "pid": 1}]
            if kind == P.SESSION
            else [H + 1, {"project": "other", "id": "r2"}]
            if kind == P.RUN_START
            else good_fields(kind)
        )
        for at in range(len(base)):
            for wrong in WRONG:
                fields = list(base)
                fields[at] = wrong
                apply_one(rig, pack(kind, rig.sid, rig.seq + 1, *fields))
        assert_still_served(rig)
    finally:
        rig.close()


@pytest.mark.parametrize("kind", [P.PING, P.SPOOL_READY, P.RESYNC, P.QUERY])
def test_control_messages_with_wrong_types_are_malformed_not_fatal(tmp_path: Path, kind: int) -> None:
    rig = IngestRig(tmp_path)
    try:
        arity = 3 if kind == P.QUERY else 1
        for wrong in [*WRONG, 2**63, -(2**63)]:
            before = rig.ingest.accepted.get(rig.sid)
            rig.ingest.handle_raw(pack(kind, rig.sid, *([wrong] * arity)), rig.sid)
            assert rig.ingest.commit()
            if kind == P.RESYNC and not (type(wrong) is int and 1 <= wrong <= P.MAX_SEQ):
                assert rig.ingest.accepted.get(rig.sid) == before
        assert_still_served(rig)
    finally:
        rig.close()


def test_a_frame_that_fails_halfway_leaves_nothing(rig: IngestRig) -> None:
    """MEDIA writes its first items before the last one fails; the guard must undo them, rows and files."""
    items = dict(good_fields(P.MEDIA)[3])
    items["zz-poison"] = {"_type": "html", "html": "<i>last</i>"}
    before, files = rig.stored(), rig.media_files()
    original = rig.ingest.media._encode

    def fail_on_poison(run_id: int, name: str, step: int, payload: Any) -> Any:
        if name == "zz-poison":  # a failure media.add does not expect (it handles only bad values)
            raise RuntimeError("simulated failure after three items were written")
        return original(run_id, name, step, payload)

    rig.ingest.media._encode = fail_on_poison  # type: ignore[method-assign]
    try:
        rig.feed_fields(P.MEDIA, H, 10_000, 1.0, items)
        assert rig.ingest.commit()
    finally:
        rig.ingest.media._encode = original  # type: ignore[method-assign]
    assert "simulated failure" in str(rig.ingest.counters.last_error)
    assert rig.stored() == before
    assert rig.media_files() == files
    rig.feed_fields(P.MEDIA, H, 10_001, 1.0, items)  # the same items without the failure are all stored
    assert rig.ingest.commit()
    assert len(rig.media_files()) > len(files)


def test_nan_inf_and_extreme_numbers_are_stored_as_logged(rig: IngestRig) -> None:
    logged = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "big": 2**64 - 1, "tiny": 5e-324}
    rig.feed_fields(P.LOG, H, 20_000, 1.0, logged)
    assert rig.ingest.commit()
    assert math.isnan(rig.series("nan")[-1])
    assert rig.series("inf")[-1] == math.inf and rig.series("ninf")[-1] == -math.inf
    assert rig.series("big")[-1] == float(2**64 - 1) and rig.series("tiny")[-1] == 5e-324


def test_bad_keys_are_named_and_the_rest_of_the_call_is_kept(rig: IngestRig) -> None:
    sent = len(rig.sent)
    megabyte_key = "k" * (1 << 20)
    rig.feed_fields(P.LOG, H, 20_001, 1.0, {megabyte_key: 1.0, "a\x00b": 2.0, "_step": 3.0, "kept": 4.0})
    assert rig.ingest.commit()
    assert rig.series("kept")[-1] == 4.0
    notices = [str(m[2]) for _, m in rig.sent[sent:] if m[0] == P.NOTICE]
    assert any("k" * 80 in n and "1 to 512 characters" in n for n in notices), notices
    assert any("NUL" in n for n in notices) and any("reserved" in n for n in notices)


def test_media_names_cannot_leave_the_media_folder(rig: IngestRig) -> None:
    html = {"_type": "html", "html": "<p>x</p>"}
    names = ["../../../../tmp/escape", "/etc/passwd", "..", "a/../../b", "\\..\\..\\c", "ok/../.."]
    rig.feed_fields(P.MEDIA, H, 20_002, 1.0, {name: html for name in names})
    assert rig.ingest.commit()
    root = rig.settings.media_dir.resolve()
    stored = rig.store.conn.execute("SELECT path FROM media WHERE kind='html' AND step=20002").fetchall()
    assert len(stored) == len(names)
    for (path,) in stored:
        assert root in (root / path).resolve().parents and ".." not in Path(path).parts
    assert not any(p.name.startswith("escape") for p in rig.settings.home.parent.rglob("*escape*"))


def test_huge_containers_are_rejected_per_key(rig: IngestRig) -> None:
    huge = {
        "list": list(range(200_000)),
        "hist": {"_type": "histogram", "values": [1] * 100_000, "bins": [0.0] * 100_001},
        "arr": {"_type": "array", "dtype": "uint8", "shape": [2**32, 2**32], "data": b""},
        "img": {"_type": "image", "format": "raw", "dtype": "uint8", "shape": [1, 2**40], "data": b"", "layout": "HW"},
    }
    rig.feed_fields(P.LOG, H, 20_003, 1.0, {"list": huge["list"], "ok": 1.0})
    rig.feed_fields(P.MEDIA, H, 20_003, 1.0, {k: v for k, v in huge.items() if k != "list"})
    assert rig.ingest.commit()
    assert rig.series("ok")[-1] == 1.0
    notices = "\n".join(rig.notices()[-6:])
    for key in ("list", "hist", "arr", "img"):
        assert f"key {key!r}" in notices, notices
