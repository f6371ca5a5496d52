"""Batching in the daemon: the numeric fast path, text, flattening, reserved keys and the key rules."""

from __future__ import annotations

import math
from typing import Any

import pytest

from trackiod.ingest.batch import MAX_DEPTH, Batch, check_key
from trackiod.store.series_key import SeriesKey


def _series(columns: Any) -> dict[tuple[int, str], tuple[list[int], list[float]]]:
    out = {}
    for key, parts in columns.series.items():
        steps, _, vals = parts.merged()
        assert key.context_id is None and key.rank is None
        out[(key.run_id, key.name)] = (steps.tolist(), vals.tolist())
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
    parts = columns.series[SeriesKey(1, "loss")]
    assert parts.merged()[1].tolist() == [100.0, 101.0]


def test_batch_nan_stays_nan() -> None:
    batch = Batch()
    batch.add(1, 0, 0.0, {"x": math.nan})
    batch.add(1, 1, 0.0, {"x": 2.0})
    steps, _, vals = batch.columns().series[SeriesKey(1, "x")].merged()
    assert steps.tolist() == [0, 1] and math.isnan(vals[0]) and vals[1] == 2.0


def test_batch_strings_stay_text_even_when_numeric_looking() -> None:
    batch = Batch()
    batch.add(1, 0, 5.0, {"s": "1.5", "n": 2})
    batch.add(1, 1, 6.0, {"s": "2", "n": 3})
    batch.add(1, 2, 7.0, {"only": "1e3"})
    columns = batch.columns()
    assert sorted(columns.texts) == [
        (SeriesKey(1, "only"), 2, 7.0, "1e3"),
        (SeriesKey(1, "s"), 0, 5.0, "1.5"),
        (SeriesKey(1, "s"), 1, 6.0, "2"),
    ]
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


def test_batch_list_values_are_rejected_not_read_as_columns() -> None:
    """Values are kept flat per group: lists of the same length in every frame must not pass as extra columns."""
    batch = Batch()
    batch.add(1, 0, 0.0, {"x": [1.0, 2.0]})
    batch.add(1, 1, 0.0, {"x": [3.0, 4.0]})
    batch.add(1, 0, 0.0, {"y": 1.0, "z": [5.0]})
    batch.add(1, 1, 0.0, {"y": 2.0, "z": [6.0]})
    columns = batch.columns()
    assert _series(columns) == {(1, "y"): ([0, 1], [1.0, 2.0])}
    assert sorted({key for _, key, _ in columns.rejects}) == ["x", "z"]


def test_batch_group_appended_by_the_caller_keeps_arrival_order() -> None:
    """Frames appended to a group directly (the ingest loop's runs of LOG frames) are numbered by Batch.took
    after the frames before them, so a step logged in two groups keeps its later value."""
    batch = Batch()
    batch.add(1, 0, 0.0, {"x": 1.0, "y": 1.0})
    group = batch.group(1, ("x",))
    for step, value in ((0, 2.0), (1, 3.0)):
        group.steps.append(step)
        group.times.append(0.0)
        group.values.append(value)
    batch.took(group, 2)
    batch.add(1, 1, 0.0, {"x": 4.0, "y": 4.0})
    assert (batch.points, batch.frames) == (6, 4)
    assert _series(batch.columns())[(1, "x")] == ([0, 0, 1, 1], [1.0, 2.0, 3.0, 4.0])
