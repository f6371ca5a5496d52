"""FORWARD_BATCH on the head's listener: what it accepts and what it refuses (never more than a malformed count)."""

from __future__ import annotations

import pytest

from trackio_shim import protocol as P
from trackio_shim.errors import ProtocolError
from trackiod.daemon.forward import _batch

SID = b"s" * P.SESSION_ID_BYTES


def test_a_batch_is_unpacked_in_order_and_other_messages_are_left_alone() -> None:
    frames = [P.pack([P.LOG, b"x" * 16, 1, 1, 0, 0.0, {"a": 1.0}]), b"any bytes"]
    assert _batch(P.pack([P.FORWARD_BATCH, SID, [5, 6], frames]), SID) == [(5, frames[0]), (6, frames[1])]
    assert _batch(P.pack([P.FORWARD, SID, 5, frames[0]]), SID) is None
    assert _batch(b"", SID) is None


@pytest.mark.parametrize(
    "message",
    [
        [P.FORWARD_BATCH, SID, [1, 2], [b"a"]],  # lengths differ
        [P.FORWARD_BATCH, SID, [0], [b"a"]],  # sequence numbers start at 1
        [P.FORWARD_BATCH, SID, ["1"], [b"a"]],
        [P.FORWARD_BATCH, SID, [1], ["not bytes"]],
        [P.FORWARD_BATCH, SID, {}, []],
        [P.FORWARD_BATCH, b"t" * P.SESSION_ID_BYTES, [1], [b"a"]],  # speaks for another session
    ],
)
def test_a_malformed_batch_is_refused_with_a_reason(message: list[object]) -> None:
    with pytest.raises(ProtocolError, match="FORWARD_BATCH"):
        _batch(P.pack(message), SID)


def test_a_batch_kind_from_a_local_client_is_an_unknown_kind() -> None:
    with pytest.raises(ProtocolError, match="unknown message kind"):
        P.decode_client(P.pack([P.FORWARD_BATCH, SID, [1], [b"a"]]))
