"""Fast unit tests, no daemon: settings, the wire protocol, value encoding, batching, summaries, the store.

The store tests use a real SQLite file in a temporary directory (apsw, WAL), through the same Store and query
functions the daemon and the read API use.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

import apsw
import msgpack
import numpy as np
import pytest

from trackio_shim import protocol as P
from trackio_shim.errors import ProtocolError, SettingsError
from trackio_shim.session.encoding import encode_default, salvage
from trackio_shim.settings import TrackiodSettings
from trackiod.ingest.batch import MAX_DEPTH, Batch, check_key
from trackiod.ingest.runs import RunBook
from trackiod.ingest.summary import RunSummary
from trackiod.read import series as query
from trackiod.store.schema import CHUNK_POINTS, SCHEMA_VERSION
from trackiod.store.writer import Store

SID = bytes(range(16))


# --------------------------------------------------------------------------------------------------- settings


def test_settings_defaults_follow_xdg(tmp_path: Path) -> None:
    settings = TrackiodSettings.load(environ={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert settings.home == tmp_path / "data" / "trackiod"
    assert settings.db_path == tmp_path / "data" / "trackiod" / "trackiod.db"
    assert settings.spool_dir == settings.home / "spool"
    assert settings.autostart is True
    assert settings.finish_timeout_s == 5.0
    assert settings.endpoint == f"ipc://{settings.runtime_dir / 'trackiod.sock'}"
    assert settings.runtime_dir.parent.name == f"trackiod-{os.getuid()}"


def test_settings_from_environment_and_overrides(tmp_path: Path) -> None:
    environ = {
        "TRACKIOD_HOME": str(tmp_path / "home"),
        "TRACKIOD_AUTOSTART": "no",
        "TRACKIOD_HEARTBEAT_INTERVAL_S": "0.75",
        "TRACKIOD_BUFFER_BYTES": "1024",
        "TRACKIOD_FINISH_TIMEOUT_S": "2.5",
        "TRACKIOD_LOG_LEVEL": "DEBUG",
        "TRACKIOD_RUNTIME_DIR": str(tmp_path / "rt"),
    }
    settings = TrackiodSettings.load(environ=environ)
    assert settings.home == tmp_path / "home"
    assert settings.autostart is False
    assert settings.heartbeat_interval_s == 0.75
    assert settings.buffer_bytes == 1024
    assert settings.finish_timeout_s == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.socket_path == tmp_path / "rt" / "trackiod.sock"
    # Explicit overrides win over the environment; None means "not given".
    overridden = TrackiodSettings.load(environ=environ, buffer_bytes=4096, finish_timeout_s=None)
    assert overridden.buffer_bytes == 4096
    assert overridden.finish_timeout_s == 2.5
    # child_env() reproduces the same settings in a spawned daemon.
    again = TrackiodSettings.load(environ=overridden.child_env())
    assert (again.home, again.endpoint, again.buffer_bytes) == (overridden.home, overridden.endpoint, 4096)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TRACKIOD_BUFFER_BYTES", "lots"),
        ("TRACKIOD_BUFFER_BYTES", "1.5"),
        ("TRACKIOD_FINISH_TIMEOUT_S", "soon"),
        ("TRACKIOD_AUTOSTART", "maybe"),
    ],
)
def test_settings_bad_values_name_the_variable(tmp_path: Path, name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name) as info:
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path), name: raw})
    assert repr(raw) in str(info.value)


def test_settings_unknown_override_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no_such_setting"):
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path)}, no_such_setting=1)


def test_settings_socket_path_length_is_checked(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 120)
    with pytest.raises(SettingsError, match="TRACKIOD_RUNTIME_DIR"):
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path), "TRACKIOD_RUNTIME_DIR": str(long_dir)})
    # The default socket path stays short even for a very long data directory (it is hashed).
    deep_home = tmp_path / ("h" * 200)
    settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(deep_home), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert len(str(settings.socket_path)) <= 100
    other = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path / "b"), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert other.socket_path != settings.socket_path  # one daemon per data directory


def test_settings_ensure_dirs_makes_private_socket_directories(tmp_path: Path) -> None:
    runtime = tmp_path / "run" / "sock"
    runtime.parent.mkdir(mode=0o755)
    os.chmod(runtime.parent, 0o755)
    settings = TrackiodSettings.load(
        environ={"TRACKIOD_HOME": str(tmp_path / "home"), "TRACKIOD_RUNTIME_DIR": str(runtime)}
    )
    settings.ensure_dirs()
    assert settings.home.is_dir() and settings.spool_dir.is_dir()
    assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    # A directory the user pointed TRACKIOD_RUNTIME_DIR into is theirs: never tightened (it could be /tmp).
    assert stat.S_IMODE(runtime.parent.stat().st_mode) == 0o755
    # In the default layout the per-user "trackiod-UID" parent is ours, and is tightened even if it existed.
    xdg = Path(tempfile.mkdtemp(prefix="xdg", dir="/tmp"))  # short: socket paths are limited to ~100 bytes
    try:
        namespace = xdg / f"trackiod-{os.getuid()}"
        namespace.mkdir(mode=0o755)
        os.chmod(namespace, 0o755)
        default = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path / "h2"), "XDG_RUNTIME_DIR": str(xdg)})
        default.ensure_dirs()
        for directory in (default.runtime_dir, namespace):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    finally:
        shutil.rmtree(xdg)


# --------------------------------------------------------------------------------------------------- protocol


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


# --------------------------------------------------------------------------------------------------- values


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


# --------------------------------------------------------------------------------------------------- batch


def _series(columns: Any) -> dict[tuple[int, str], tuple[list[int], list[float]]]:
    out = {}
    for key, parts in columns.series.items():
        steps, _, vals = parts.merged()
        out[key] = (steps.tolist(), vals.tolist())
    return out


def test_batch_numeric_fast_path() -> None:
    batch = Batch()
    batch.add(1, 0, 100.0, {"loss": 1.5, "acc": 1, "ok": True})
    batch.add(1, 1, 101.0, {"loss": math.inf, "acc": 2, "ok": False})
    batch.add(2, 0, 102.0, {"loss": 9.0, "acc": 3, "ok": True})
    assert (batch.points, batch.frames) == (9, 3)
    columns = batch.columns()
    assert not batch and batch.points == 0
    assert _series(columns) == {
        (1, "loss"): ([0, 1], [1.5, math.inf]),
        (1, "acc"): ([0, 1], [1.0, 2.0]),
        (1, "ok"): ([0, 1], [1.0, 0.0]),
        (2, "loss"): ([0], [9.0]),
        (2, "acc"): ([0], [3.0]),
        (2, "ok"): ([0], [1.0]),
    }
    assert columns.texts == [] and columns.rejects == []
    parts = columns.series[(1, "loss")]
    assert parts.merged()[1].tolist() == [100.0, 101.0]


def test_batch_nan_stays_nan() -> None:
    batch = Batch()
    batch.add(1, 0, 0.0, {"x": math.nan})
    batch.add(1, 1, 0.0, {"x": 2.0})
    steps, _, vals = batch.columns().series[(1, "x")].merged()
    assert steps.tolist() == [0, 1] and math.isnan(vals[0]) and vals[1] == 2.0


def test_batch_strings_stay_text_even_when_numeric_looking() -> None:
    batch = Batch()
    batch.add(1, 0, 5.0, {"s": "1.5", "n": 2})
    batch.add(1, 1, 6.0, {"s": "2", "n": 3})
    batch.add(1, 2, 7.0, {"only": "1e3"})
    columns = batch.columns()
    assert sorted(columns.texts) == [(1, "only", 2, 7.0, "1e3"), (1, "s", 0, 5.0, "1.5"), (1, "s", 1, 6.0, "2")]
    assert _series(columns) == {(1, "n"): ([0, 1], [2.0, 3.0])}


def test_batch_flattens_nested_dicts_and_keeps_arrival_order() -> None:
    batch = Batch()
    batch.add(1, 0, 0.0, {"x": 1.0})
    batch.add(1, 0, 0.0, {"x": 2.0, "train": {"loss": 0.5, "deep": {"er": 3}}})
    batch.add(1, 1, 0.0, {"x": 3.0})
    batch.add(1, 2, 0.0, {3: 4.0, "huge": 10**400, "none": None})
    columns = batch.columns()
    assert _series(columns) == {
        (1, "x"): ([0, 0, 1], [1.0, 2.0, 3.0]),  # arrival order: the later value for step 0 wins on read
        (1, "train/loss"): ([0], [0.5]),
        (1, "train/deep/er"): ([0], [3.0]),
        (1, "3"): ([2], [4.0]),
        (1, "huge"): ([2], [math.inf]),
    }
    assert columns.rejects == [] and columns.texts == []


@pytest.mark.parametrize("reserved", ["_step", "_timestamp", "_runtime"])
def test_batch_rejects_reserved_keys(reserved: str) -> None:
    batch = Batch()
    batch.add(1, 0, 0.0, {reserved: 1.0, "fine": 2.0})
    batch.add(1, 1, 0.0, {"nested": {reserved: 1.0}})  # only top-level names are reserved
    columns = batch.columns()
    assert _series(columns) == {(1, "fine"): ([0], [2.0]), (1, f"nested/{reserved}"): ([1], [1.0])}
    assert len(columns.rejects) == 1
    run_id, key, reason = columns.rejects[0]
    assert (run_id, key) == (1, reserved) and "reserved" in reason


def test_check_key_rules() -> None:
    assert check_key("loss") == ("loss", None)
    assert check_key(3) == ("3", None)
    assert check_key("") == (None, "metric names must be 1 to 512 characters long")
    assert check_key("x" * 513)[0] is None
    assert check_key("x" * 512) == ("x" * 512, None)
    assert check_key("a\x00b")[0] is None
    assert check_key(("t",))[0] is None


def test_batch_depth_limit() -> None:
    def nest(levels: int) -> dict[str, Any]:
        value: Any = 1.0
        for i in reversed(range(levels)):
            value = {f"k{i}": value}
        return value

    batch = Batch()
    batch.add(1, 0, 0.0, nest(10))
    batch.add(1, 1, 0.0, {**nest(MAX_DEPTH + 5), "other": 2.0})
    columns = batch.columns()
    assert _series(columns) == {(1, "/".join(f"k{i}" for i in range(10))): ([0], [1.0]), (1, "other"): ([1], [2.0])}
    assert len(columns.rejects) == 1
    assert f"nested deeper than {MAX_DEPTH} levels" in columns.rejects[0][2]


def test_batch_rejects_unsupported_values() -> None:
    batch = Batch()
    batch.add(1, 4, 0.0, {"lst": [1, 2], "ok": 1.0, "blob": b"\x00"})
    columns = batch.columns()
    assert _series(columns) == {(1, "ok"): ([4], [1.0])}
    reasons = {key: reason for _, key, reason in columns.rejects}
    assert set(reasons) == {"lst", "blob"}
    assert "list" in reasons["lst"] and "bytes" in reasons["blob"]


# --------------------------------------------------------------------------------------------------- summary


def test_run_summary_last_value_by_default() -> None:
    summary = RunSummary()
    summary.add_numeric("loss", np.array([3.0, 2.0]))
    summary.add_numeric("loss", np.array([5.0, 4.0]))
    summary.add_numeric("n", np.array([7.0]))
    summary.add_text("label", "cat")
    summary.add_text("label", "dog")
    assert summary.view() == {"loss": 4, "n": 7, "label": "dog"}
    assert isinstance(summary.view()["n"], int)


def test_run_summary_aggregates_and_globs() -> None:
    summary = RunSummary()
    summary.define({"name": "loss", "summary": ["min", "max", "mean", "first", "last"]})
    summary.define({"name": "train/*", "summary": ["max"]})
    summary.define({"name": "train/exact", "summary": ["min"]})
    summary.define({"name": "hidden", "summary": ["none"]})
    summary.define({"name": "score", "summary": ["best"], "goal": "maximize"})
    summary.add_numeric("loss", np.array([4.0, math.nan, 1.0]))
    summary.add_numeric("loss", np.array([7.0]))
    summary.add_numeric("train/a", np.array([1.0, 9.0, 2.0]))
    summary.add_numeric("train/exact", np.array([1.0, -9.0, 2.0]))
    summary.add_numeric("hidden", np.array([1.0]))
    summary.add_text("hidden", "also hidden")
    summary.add_numeric("score", np.array([0.2, 0.9, 0.5]))
    assert summary.view() == {
        "loss": {"min": 1, "max": 7, "mean": 4, "first": 4, "last": 7},
        "train/a": {"max": 9},
        "train/exact": {"min": -9},
        "score": {"best": 0.9},
    }
    # Redefining a metric replaces its definition.
    summary.define({"name": "loss", "summary": ["last"]})
    assert summary.view()["loss"] == 7


def test_run_summary_non_finite_values_and_explicit_overrides() -> None:
    summary = RunSummary()
    summary.add_numeric("a", np.array([1.0, math.nan]))
    summary.add_numeric("b", np.array([math.inf]))
    summary.add_numeric("c", np.array([-math.inf]))
    summary.define({"name": "d", "summary": ["min"]})
    summary.add_numeric("d", np.array([math.nan]))
    assert summary.view() == {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": {"min": "NaN"}}

    summary.set_explicit({"a": 0.25, "best": {"epoch": 3}})
    assert summary.view()["a"] == 0.25 and summary.view()["best"] == {"epoch": 3}
    summary.add_numeric("a", np.array([2.0]))  # logging the key again replaces the explicit value
    assert summary.view()["a"] == 2
    assert summary.view()["best"] == {"epoch": 3}


def test_run_summary_state_round_trip() -> None:
    summary = RunSummary()
    summary.define({"name": "loss", "summary": ["min", "mean"]})
    summary.add_numeric("loss", np.array([3.0, 1.0]))
    summary.add_text("phase", "train")
    summary.set_explicit({"best": 1})
    restored = RunSummary.from_state(summary.state(), summary.defs)
    restored.add_numeric("loss", np.array([5.0]))
    assert restored.view() == {"loss": {"min": 1, "mean": 3}, "phase": "train", "best": 1}


# --------------------------------------------------------------------------------------------------- store + query


def _new_run(store: Store, run_key: str = "r1") -> int:
    with store.conn:
        row = store.create_run("proj", run_key, "name", {"tags": ["t"]}, {"lr": 0.1}, "host", 123)
    return int(row["id"])


def _chunk_sizes(store: Store, run_id: int, key_id: int) -> list[int]:
    return [
        n
        for (n,) in store.conn.execute("SELECT n FROM chunks WHERE run_id=? AND key_id=? ORDER BY id", (run_id, key_id))
    ]


def _write(store: Store, run_id: int, key_id: int, steps: range | list[int], offset: float = 0.0) -> None:
    s = np.asarray(list(steps), np.int64)
    with store.conn:
        store.write_series(run_id, key_id, s, s.astype(np.float64) + 1000.0, s.astype(np.float64) + offset)


def test_store_schema_is_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    Store(tmp_path / "t.db").close()  # reopening does not migrate again


def test_store_seals_chunks_across_many_small_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    run_id = _new_run(store)
    key_id = store.key_id("loss")
    for start in range(0, 3000, 30):  # 100 writes of 30 points
        _write(store, run_id, key_id, range(start, start + 30))
    sizes = _chunk_sizes(store, run_id, key_id)
    assert sizes.count(CHUNK_POINTS) == 2
    assert sum(sizes) == 3000  # every point exactly once: tail chunks are replaced when sealed
    assert all(n < CHUNK_POINTS for n in sizes if n != CHUNK_POINTS)
    reader = query.open_reader(tmp_path / "t.db")
    steps, times, vals = query.read_series(reader, run_id, key_id)
    assert steps.tolist() == list(range(3000))
    assert vals.tolist() == [float(i) for i in range(3000)]
    assert times.tolist() == [1000.0 + i for i in range(3000)]
    steps, _, vals = query.read_series(reader, run_id, key_id, min_step=1020, max_step=1030)
    assert steps.tolist() == list(range(1020, 1031)) and vals.tolist() == [float(i) for i in range(1020, 1031)]
    reader.close()
    store.close()


def test_store_reloads_the_tail_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = Store(path)
    run_id = _new_run(store)
    key_id = store.key_id("loss")
    for start in range(0, 1000, 100):
        _write(store, run_id, key_id, range(start, start + 100))
    assert _chunk_sizes(store, run_id, key_id) == [100] * 10
    store.close()

    store = Store(path)  # a restarted daemon: the tail is read back from the database
    assert store.key_id("loss") == key_id
    _write(store, run_id, key_id, range(1000, 1100))
    assert _chunk_sizes(store, run_id, key_id) == [CHUNK_POINTS, 1100 - CHUNK_POINTS]
    store.forget_tails(run_id)  # a finished run's tail is forgotten and re-read on resume
    _write(store, run_id, key_id, range(1100, 1110))
    assert sum(_chunk_sizes(store, run_id, key_id)) == 1110
    reader = query.open_reader(path)
    steps, _, vals = query.read_series(reader, run_id, key_id)
    assert steps.tolist() == list(range(1110)) and vals.tolist() == [float(i) for i in range(1110)]
    reader.close()
    store.close()


def test_store_later_value_for_a_step_wins(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    run_id = _new_run(store)
    key_id = store.key_id("x")
    _write(store, run_id, key_id, range(1100))  # one sealed chunk plus a tail
    _write(store, run_id, key_id, [5, 1050], offset=0.5)  # rewrites in the sealed chunk and in the tail
    _write(store, run_id, key_id, [5], offset=0.75)
    text_key = store.key_id("label")
    with store.conn:
        store.write_texts([(run_id, text_key, 3, 1.0, "old"), (run_id, text_key, 4, 1.0, "four")])
        store.write_texts([(run_id, text_key, 3, 2.0, "new")])
    reader = query.open_reader(tmp_path / "t.db")
    steps, _, vals = query.read_series(reader, run_id, key_id)
    assert steps.tolist() == list(range(1100))
    assert vals[5] == 5.75 and vals[1050] == 1050.5 and vals[6] == 6.0
    text_steps, _, texts = query.read_texts(reader, run_id, text_key)
    assert text_steps.tolist() == [3, 4] and texts == ["new", "four"]
    reader.close()
    store.close()


def test_batch_to_store_to_history_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = Store(path)
    run_id = _new_run(store)
    notices: list[str] = []
    book = RunBook(store, {}, lambda sid, text: notices.append(text))
    batch = Batch()
    for step in range(5):
        batch.add(run_id, step, 100.0 + step, {"loss": 1.0 / (step + 1), "tag": f"s{step}", "nest": {"a": step}})
    batch.add(run_id, 2, 200.0, {"loss": 42.0, "_step": 1})  # a rewrite of step 2, plus a reserved key
    with store.conn:
        book.write_points(batch.columns())
        book.save_dirty()
    assert len(notices) == 1 and "'_step'" in notices[0]

    reader = query.open_reader(path)
    with pytest.raises(apsw.Error):  # readers cannot write
        reader.execute("DELETE FROM runs")
    row = query.get_run(reader, "proj", "r1")
    assert row is not None
    assert (row["config"], row["tags"], row["last_step"]) == ({"lr": 0.1}, ["t"], 4)
    assert row["summary"] == {"loss": 42, "tag": "s4", "nest/a": 4}  # the last value logged, whatever its step
    history = list(query.history(reader, row))
    assert [h["_step"] for h in history] == [0, 1, 2, 3, 4]
    assert history[2] == {"_step": 2, "loss": 42, "tag": "s2", "nest/a": 2, "_timestamp": 200.0, "_runtime": 0.0}
    assert history[4]["loss"] == 0.2 and history[4]["_timestamp"] == 104.0
    assert [h["_step"] for h in query.history(reader, row, keys=["tag"], min_step=1, max_step=3)] == [1, 2, 3]
    assert [h["_step"] for h in query.history(reader, row, samples=3)] == [0, 2, 4]
    assert list(query.history(reader, row, keys=["nope"])) == []
    reader.close()
    store.close()


def test_open_reader_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing has been logged"):
        query.open_reader(tmp_path / "missing.db")
