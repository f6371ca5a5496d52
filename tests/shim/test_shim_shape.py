"""The shim's module shape: the module of Run is importable by its name, and the wandb-style globals are not
modules (``trackio_shim.run`` was once both the module run.py and the current run)."""

from __future__ import annotations

import importlib
import warnings

import trackio_shim


def test_the_run_module_is_importable_and_does_not_shadow_the_global() -> None:
    module = importlib.import_module("trackio_shim.sdk.wandb_run")
    assert module.Run is trackio_shim.Run
    import trackio_shim.sdk.wandb_run as by_statement

    assert by_statement is module


def test_run_is_none_before_init() -> None:
    trackio_shim.teardown()
    assert trackio_shim.run is None
    assert len(trackio_shim.config) == 0


def test_teardown_resets_a_disabled_run() -> None:
    run = trackio_shim.init(project="shape", mode="disabled", config={"lr": 0.1})
    assert trackio_shim.run is run and trackio_shim.config["lr"] == 0.1
    trackio_shim.teardown()
    assert trackio_shim.run is None and run._finished
    assert "lr" not in trackio_shim.config


def test_warnings_point_at_the_callers_line() -> None:
    run = trackio_shim.init(project="shape", mode="disabled")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run.set_context(None)
            trackio_shim.init(project="shape", mode="disabled", not_a_wandb_keyword=1)
        assert caught, "init() with an unknown keyword warns"
        assert caught[0].filename == __file__
    finally:
        trackio_shim.teardown()
