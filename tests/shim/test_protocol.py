"""The wire protocol's decoders: well-formed messages, malformed frames refused with a reason, bounded sizes."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from trackio_shim import protocol as P
from trackio_shim.errors import ProtocolError

SID = bytes(range(16))


def _frame(*parts: Any) -> bytes:
    return msgpack.packb(list(parts), use_bin_type=True)


def test_decode_client_accepts_well_formed_messages() -> None:
    kind, sid, seq, fields = P.decode_client(_frame(P.LOG, SID, 3, 1, 7, 1.5, {"a": 1}))
    assert (kind, sid, seq, fields) == (P.LOG, SID, 3, [1, 7, 1.5, {"a": 1}])
    assert P.decode_client(_frame(P.PING, SID, P.PROTOCOL_VERSION)) == (P.PING, SID, 0, [P.PROTOCOL_VERSION])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1garbage", "undecodable"),
        (_frame(P.LOG, SID, 1, 1, 0, 0.0, {"a": 1})[:-3], "undecodable"),  # truncated
        (_frame(P.PING, SID, 1) + b"\x00", "undecodable"),  # trailing bytes
        (msgpack.packb(42), "array"),
        (msgpack.packb({"kind": 3}), "array"),
        (_frame(P.LOG), "array"),
        (_frame(99, SID, 1), "unknown message kind"),
        (_frame("3", SID, 1), "unknown message kind"),
        (_frame(P.REPLY, SID, 1, True, None), "unknown message kind"),  # a daemon kind from a client
        (_frame(P.LOG, SID[:8], 1, 1, 0, 0.0, {}), "session id"),
        (_frame(P.LOG, "x" * 16, 1, 1, 0, 0.0, {}), "session id"),
        (_frame(P.LOG, SID, 1, 1, 0, 0.0), "expected 7 elements"),
        (_frame(P.LOG, SID, 1, 1, 0, 0.0, {}, "extra"), "expected 7 elements"),
        (_frame(P.LOG, SID, 0, 1, 0, 0.0, {}), "positive int"),
        (_frame(P.LOG, SID, -5, 1, 0, 0.0, {}), "positive int"),
        (_frame(P.LOG, SID, True, 1, 0, 0.0, {}), "positive int"),
        (_frame(P.LOG, SID, 1.0, 1, 0, 0.0, {}), "positive int"),
        (_frame(P.PING, SID), "expected 3 elements"),
        (_frame(P.QUERY, SID, 1, "status"), "expected 5 elements"),
    ],
)
def test_decode_client_rejects_malformed_frames(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        P.decode_client(raw)


def test_decode_daemon_rejects_client_kinds() -> None:
    assert P.decode_daemon(msgpack.packb([P.ACK, 5])) == [P.ACK, 5]
    for raw in (msgpack.packb([P.LOG, 1]), msgpack.packb([]), msgpack.packb("x"), b"\xc1"):
        with pytest.raises(ProtocolError):
            P.decode_daemon(raw)


def test_unpack_bounds_container_sizes() -> None:
    big = msgpack.packb(list(range(100)))
    assert P.unpack(big) == list(range(100))
    with pytest.raises(ProtocolError):
        P.unpack(big, max_len=10)
