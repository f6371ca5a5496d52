"""Run summaries: the last value by default, aggregates and globs, non-finite values, the saved state."""

from __future__ import annotations

import math

import numpy as np

from trackiod.ingest.summary import RunSummary


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
