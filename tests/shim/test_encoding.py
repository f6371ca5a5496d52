"""Value encoding in the shim: numpy scalars, everything else refused, bad values salvaged by key."""

from __future__ import annotations

import math
import warnings

import msgpack
import numpy as np
import pytest

from trackio_shim import protocol as P
from trackio_shim.session.encoding import encode_default, salvage

SID = bytes(range(16))


def test_encode_default_numpy_values() -> None:
    cases = [
        (np.float32(0.5), 0.5, float),
        (np.float64(-2.25), -2.25, float),
        (np.int64(7), 7, int),
        (np.uint16(65535), 65535, int),
        (np.bool_(True), True, bool),
        (np.array(3.5), 3.5, float),
        (np.array(4, dtype=np.int8), 4, int),
    ]
    for value, expected, kind in cases:
        out = encode_default(value)
        assert out == expected and type(out) is kind, (value, out)
    assert math.isnan(encode_default(np.float32("nan")))
    assert encode_default(np.float64("-inf")) == -math.inf


def test_encode_default_rejects_everything_else() -> None:
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        encode_default(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match=r"builtins\.object"):
        encode_default(object())
    with pytest.raises(TypeError, match=r"builtins\.complex"):
        encode_default(1 + 2j)


def test_salvage_drops_bad_values_once_and_keeps_the_rest() -> None:
    packer = msgpack.Packer(default=encode_default, use_bin_type=True)
    data = {"u_keep": 1, "u_bad": object(), "u_nest": {"u_inner": 1 + 2j, "u_fine": np.float32(0.5)}}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        frame = salvage(packer, [P.LOG, SID, 11, 1, 4, 9.0, data], 1 << 20)
        salvage(packer, [P.LOG, SID, 12, 1, 5, 9.0, data], 1 << 20)  # same keys and types: no new warnings
    assert frame is not None
    assert P.decode_client(frame) == (P.LOG, SID, 11, [1, 4, 9.0, {"u_keep": 1, "u_nest": {"u_fine": 0.5}}])
    messages = [str(w.message) for w in record]
    assert len(messages) == 2, messages
    assert "'u_bad'" in messages[0] and "object" in messages[0]
    assert "'u_nest/u_inner'" in messages[1] and "complex" in messages[1]


def test_salvage_drops_oversized_values_and_frames() -> None:
    packer = msgpack.Packer(default=encode_default, use_bin_type=True)
    with pytest.warns(UserWarning, match="'v_huge'"):
        frame = salvage(packer, [P.LOG, SID, 1, 1, 0, 0.0, {"v_small": 1, "v_huge": "x" * 5000}], 1000)
    assert frame is not None
    assert P.decode_client(frame)[3] == [1, 0, 0.0, {"v_small": 1}]
    # Many values each under the limit but together over it: the call is dropped as a whole, with a warning.
    with pytest.warns(UserWarning, match="frame limit"):
        whole = salvage(packer, [P.LOG, SID, 2, 1, 0, 0.0, {f"v_{i}": "y" * 400 for i in range(5)}], 1000)
    assert whole is None
