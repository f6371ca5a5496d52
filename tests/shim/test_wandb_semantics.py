"""wandb semantics of trackio_shim, end to end: a real daemon, real sockets, real SQLite, read back through Api().

Most tests drive ``trackio_shim`` in this process (the ``shim`` fixture); the ones about process exit (uncaught
exceptions, atexit) run a fresh interpreter. Choices where wandb and the issue differ are noted in the tests.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script

# --------------------------------------------------------------------------------------------------- helpers


def stored(shim: Any, run: Any) -> Any:
    """The run as the read API sees it."""
    return shim.Api().run(f"{run.project}/{run.id}")


def rows_by_step(shim: Any, run: Any, **kwargs: Any) -> dict[int, dict[str, Any]]:
    """``{step: {key: value}}`` from scan_history, without the underscore columns."""
    out: dict[int, dict[str, Any]] = {}
    for row in stored(shim, run).scan_history(**kwargs):
        out[row["_step"]] = {k: v for k, v in row.items() if not k.startswith("_")}
    return out


def matching(record: list[warnings.WarningMessage], text: str) -> list[str]:
    return [str(w.message) for w in record if text in str(w.message)]


# --------------------------------------------------------------------------------------------------- resume


def test_resume_never_with_an_existing_id_raises(daemon: DaemonProcess, shim: Any) -> None:
    first = shim.init(project="p", id="never1")
    first.log({"x": 1})
    first.finish()

    with pytest.raises(shim.RunExistsError, match="never1"):
        shim.init(project="p", id="never1")
    with pytest.raises(shim.RunExistsError, match="never1"):
        shim.init(project="p", id="never1", resume="never")
    assert shim.run is None
    # The stored run is untouched by the refused inits.
    runs = shim.Api().runs("p")
    assert [r.id for r in runs] == ["never1"]
    assert runs[0].state == "finished"
    assert rows_by_step(shim, first) == {0: {"x": 1}}


def test_resume_must_with_a_missing_run_raises(daemon: DaemonProcess, shim: Any) -> None:
    with pytest.raises(shim.RunNotFoundError, match="nosuch"):
        shim.init(project="p", id="nosuch", resume="must")
    with pytest.raises(shim.RunNotFoundError, match="ghost-name"):
        shim.init(project="p", name="ghost-name", resume="must")
    assert shim.run is None
    assert shim.Api().runs("p") == []


def test_resume_allow_by_id_continues_steps_and_merges_config(daemon: DaemonProcess, shim: Any) -> None:
    first = shim.init(project="p", id="res1", name="resumable", config={"lr": 0.1, "batch": 32})
    assert first.resumed is False
    for i in range(3):
        first.log({"loss": 10 - i})
    first.finish()

    second = shim.init(project="p", id="res1", resume="allow", config={"batch": 32, "epochs": 5})
    assert second.id == "res1"
    assert second.name == "resumable"
    assert second.resumed is True
    assert second.step == 3  # last stored step + 1
    assert second.config.as_dict() == {"lr": 0.1, "batch": 32, "epochs": 5}
    assert shim.config.lr == 0.1
    second.log({"loss": 6})
    second.log({"loss": 5})
    second.finish()

    api_run = stored(shim, second)
    assert api_run.state == "finished"
    assert api_run.config == {"lr": 0.1, "batch": 32, "epochs": 5}
    assert rows_by_step(shim, second) == {
        0: {"loss": 10},
        1: {"loss": 9},
        2: {"loss": 8},
        3: {"loss": 6},
        4: {"loss": 5},
    }
    assert api_run.summary["loss"] == 5
    assert [r.id for r in shim.Api().runs("p")] == ["res1"]


def test_resume_must_by_id_and_true_as_allow(daemon: DaemonProcess, shim: Any) -> None:
    first = shim.init(project="p", id="res2")
    first.log({"a": 1}, step=7)
    first.finish()

    again = shim.init(project="p", id="res2", resume="must")
    assert again.resumed is True
    assert again.step == 8
    again.log({"a": 2})
    again.finish()

    third = shim.init(project="p", id="res2", resume=True)  # wandb: resume=True means "allow"
    assert third.resumed is True
    assert third.step == 9
    third.finish()
    assert rows_by_step(shim, first) == {7: {"a": 1}, 8: {"a": 2}}


def test_resume_allow_creates_a_missing_run(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p", id="fresh1", resume="allow", config={"k": 1})
    assert run.id == "fresh1"
    assert run.resumed is False
    assert run.step == 0
    run.log({"v": 1.5})
    run.finish()
    assert stored(shim, run).config == {"k": 1}
    assert rows_by_step(shim, run) == {0: {"v": 1.5}}


def test_resume_by_name_when_no_id(daemon: DaemonProcess, shim: Any) -> None:
    first = shim.init(project="p", name="named-run")
    first.log({"x": 1})
    first.log({"x": 2})
    first.finish()

    # Without resume, a second run may share the name: it is a new run.
    other = shim.init(project="p", name="named-run")
    assert other.id != first.id
    assert other.resumed is False
    other.log({"x": 100})
    other.finish()

    # resume by name picks the newest run with that name.
    must = shim.init(project="p", name="named-run", resume="must")
    assert must.id == other.id
    assert must.resumed is True
    assert must.step == 1
    must.finish()

    allow = shim.init(project="p", name="brand-new", resume="allow")
    assert allow.resumed is False
    allow.finish()
    allow_again = shim.init(project="p", name="brand-new", resume="allow")
    assert allow_again.id == allow.id
    assert allow_again.resumed is True
    allow_again.finish()
    assert sorted(r.name for r in shim.Api().runs("p")) == ["brand-new", "named-run", "named-run"]


# --------------------------------------------------------------------------------------------------- steps


def test_log_without_step_advances(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    assert run.step == 0
    shim.log({"a": 1})
    shim.log({"a": 2})
    run.log({"a": 3})
    assert run.step == 3
    run.finish()
    assert rows_by_step(shim, run) == {0: {"a": 1}, 1: {"a": 2}, 2: {"a": 3}}


def test_commit_false_accumulates_into_the_current_step(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    run.log({"a": 1}, commit=False)
    run.log({"b": 2}, commit=False)
    assert run.step == 0
    run.log({"c": 3})
    assert run.step == 1
    run.log({"a": 4}, commit=False)
    run.log({}, commit=True)  # an empty commit closes the step
    run.log({"a": 5})
    run.finish()
    assert rows_by_step(shim, run) == {0: {"a": 1, "b": 2, "c": 3}, 1: {"a": 4}, 2: {"a": 5}}


def test_explicit_step_then_implicit_shares_the_step(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    run.log({"a": 1}, step=5)
    assert run.step == 5  # wandb: an explicit step without commit= does not commit
    run.log({"b": 2})
    assert run.step == 6
    run.log({"c": 3})
    run.log({"d": 4}, step=10, commit=True)
    assert run.step == 11
    run.log({"e": 5})
    run.log({"f": 6}, step=20)
    run.log({"g": 7}, step=21)  # a higher step implicitly closes step 20
    run.finish()
    assert rows_by_step(shim, run) == {
        5: {"a": 1, "b": 2},
        6: {"c": 3},
        10: {"d": 4},
        11: {"e": 5},
        20: {"f": 6},
        21: {"g": 7},
    }


def test_decreasing_step_is_stored_with_a_one_time_warning(daemon: DaemonProcess, shim: Any) -> None:
    # wandb drops such rows ("data will be ignored"); the issue asks to store them, overwriting those keys.
    run = shim.init(project="p")
    for i in range(5):
        run.log({"x": i, "y": 10 * i})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run.log({"x": 100}, step=2)
        assert run.step == 2  # the counter continues from the rewound step
        run.log({"x": 101}, step=1, commit=True)
        assert run.step == 2
    found = matching(record, "lower than the current step")
    assert len(found) == 1, found
    assert "step 2" in found[0]
    run.finish()
    assert rows_by_step(shim, run) == {
        0: {"x": 0, "y": 0},
        1: {"x": 101, "y": 10},
        2: {"x": 100, "y": 20},
        3: {"x": 3, "y": 30},
        4: {"x": 4, "y": 40},
    }
    # The summary is the last value logged, whatever its step.
    assert stored(shim, run).summary == {"x": 101, "y": 40}


# --------------------------------------------------------------------------------------------------- values


def test_nested_dicts_flatten_with_slash(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    run.log({"train": {"loss": 0.5, "acc": {"top1": 0.25, "top5": 0.75}}, "lr": 0.001})
    run.log({"train": {"loss": 0.25}})
    run.finish()
    assert rows_by_step(shim, run) == {
        0: {"train/loss": 0.5, "train/acc/top1": 0.25, "train/acc/top5": 0.75, "lr": 0.001},
        1: {"train/loss": 0.25},
    }
    assert stored(shim, run).summary == {
        "train/loss": 0.25,
        "train/acc/top1": 0.25,
        "train/acc/top5": 0.75,
        "lr": 0.001,
    }


def test_nan_and_infinities_are_preserved(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    run.log({"v": math.nan, "w": 1.0})
    run.log({"v": math.inf, "w": math.nan})
    run.log({"v": -math.inf, "w": 2.0})
    run.finish()
    rows = rows_by_step(shim, run)
    assert math.isnan(rows[0]["v"]) and rows[0]["w"] == 1
    assert rows[1]["v"] == math.inf and math.isnan(rows[1]["w"])
    assert rows[2]["v"] == -math.inf and rows[2]["w"] == 2
    # Summary values are JSON; like wandb's API, non-finite numbers read back as "NaN"/"Infinity" strings.
    assert stored(shim, run).summary == {"v": "-Infinity", "w": 2}


def test_scalar_types_bool_int_float_str(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    run.log({"flag": True, "count": 3, "ratio": 2.5, "label": "cat", "numeric_text": "1.5"})
    run.log({"flag": False, "count": -7, "ratio": 1e300, "label": "dog", "numeric_text": "2"})
    run.finish()
    rows = rows_by_step(shim, run)
    assert rows == {
        0: {"flag": 1, "count": 3, "ratio": 2.5, "label": "cat", "numeric_text": "1.5"},
        1: {"flag": 0, "count": -7, "ratio": 1e300, "label": "dog", "numeric_text": "2"},
    }
    assert isinstance(rows[0]["numeric_text"], str)
    assert isinstance(rows[1]["numeric_text"], str)
    assert stored(shim, run).summary["label"] == "dog"


def test_numpy_scalars_and_zero_d_arrays(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these may warn
        run.log(
            {
                "f32": np.float32(0.5),
                "f64": np.float64(0.125),
                "i64": np.int64(7),
                "u8": np.uint8(200),
                "b": np.bool_(True),
                "arr0": np.array(2.25),
                "nested": {"i": np.int32(-3)},
            }
        )
        run.log({"f32": np.float32(np.nan), "arr0": np.array(np.inf)})
    run.finish()
    rows = rows_by_step(shim, run)
    assert rows[0] == {"f32": 0.5, "f64": 0.125, "i64": 7, "u8": 200, "b": 1, "arr0": 2.25, "nested/i": -3}
    assert math.isnan(rows[1]["f32"]) and rows[1]["arr0"] == math.inf


def test_unsupported_values_warn_once_and_keep_the_rest(daemon: DaemonProcess, shim: Any) -> None:
    class Opaque:
        pass

    run = shim.init(project="p")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run.log({"kept": 1, "opaque_val": Opaque(), "list_val": [1, 2, 3], "deep": {"obj": object(), "ok": 2}})
        run.log({"kept": 2, "opaque_val": Opaque(), "list_val": [4, 5, 6]})
        run.finish()  # the daemon's note about the list arrives before the finish is acknowledged
    opaque = matching(record, "'opaque_val'")
    assert len(opaque) == 1, opaque
    assert "Opaque" in opaque[0]
    deep = matching(record, "'deep/obj'")
    assert len(deep) == 1 and "object" in deep[0], deep
    listed = matching(record, "'list_val'")
    assert len(listed) == 1 and "list" in listed[0], listed
    assert rows_by_step(shim, run) == {0: {"kept": 1, "deep/ok": 2}, 1: {"kept": 2}}


# --------------------------------------------------------------------------------------------------- config


def test_config_access_update_and_persistence(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p", config={"lr": 0.1, "model": {"depth": 4}})
    assert shim.config is run.config
    assert run.config.lr == 0.1
    assert run.config["model"] == {"depth": 4}
    assert "lr" in run.config and "nope" not in run.config
    with pytest.raises(AttributeError):
        _ = run.config.nope
    with pytest.raises(KeyError):
        _ = run.config["nope"]

    run.config.batch = 32
    run.config["wd"] = 0.01
    run.log({"loss": 1.0})
    run.config.update({"epochs": 3, "lr": 0.1})  # an unchanged value is not a change
    with pytest.raises(shim.ConfigError, match="'lr'"):
        run.config.update({"lr": 0.2})
    with pytest.raises(shim.ConfigError, match="'batch'"):
        run.config.batch = 64
    with pytest.raises(shim.ConfigError, match="'wd'"):
        run.config["wd"] = 0.5
    assert run.config.lr == 0.1 and run.config.batch == 32
    run.config.update({"lr": 0.2}, allow_val_change=True)
    run.config.setdefaults({"lr": 99, "seed": 7})
    assert run.config.lr == 0.2 and run.config.seed == 7
    run.log({"loss": 0.5})
    run.config.update(argparse.Namespace(optimizer="adam"))
    expected = {
        "lr": 0.2,
        "model": {"depth": 4},
        "batch": 32,
        "wd": 0.01,
        "epochs": 3,
        "seed": 7,
        "optimizer": "adam",
    }
    assert run.config.as_dict() == expected
    assert dict(run.config.items()) == expected
    run.finish()
    assert stored(shim, run).config == expected


def test_config_from_namespace_and_init_allow_val_change(daemon: DaemonProcess, shim: Any) -> None:
    args = argparse.Namespace(lr=0.3, epochs=2, name="resnet")
    run = shim.init(project="p", config=args, allow_val_change=True)
    assert run.config.as_dict() == {"lr": 0.3, "epochs": 2, "name": "resnet"}
    run.config.lr = 0.4  # allowed for this run by init(allow_val_change=True)
    run.config.update({"epochs": 5})
    run.finish()
    assert stored(shim, run).config == {"lr": 0.4, "epochs": 5, "name": "resnet"}


def test_config_changes_after_finish_of_last_log_are_persisted(daemon: DaemonProcess, shim: Any) -> None:
    # "every change is persisted, not only the first": changes with no log() after them still land.
    run = shim.init(project="p", config={"a": 1})
    run.config.update({"b": 2})
    run.config.update({"c": 3})
    run.config.update({"a": 10}, allow_val_change=True)
    run.finish()
    assert stored(shim, run).config == {"a": 10, "b": 2, "c": 3}


# --------------------------------------------------------------------------------------------------- summary


def test_summary_last_value_and_explicit_values(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    for loss in (3.0, 1.0, 2.0):
        run.log({"loss": loss, "phase": "train"})
    assert run.summary["loss"] == 2
    assert shim.summary["phase"] == "train"
    assert "loss" in run.summary
    run.summary["best"] = 0.9
    run.summary.update({"note": "ok"})
    assert run.summary["best"] == 0.9
    run.summary["loss"] = 42  # explicit, until the key is logged again
    assert run.summary["loss"] == 42
    run.log({"loss": 0.5})
    assert run.summary["loss"] == 0.5
    run.finish()
    assert stored(shim, run).summary == {"loss": 0.5, "phase": "train", "best": 0.9, "note": "ok"}


def test_define_metric_summaries_and_globs(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    shim.define_metric("loss", summary="min")
    run.define_metric("acc", summary="max")
    run.define_metric("train/*", summary="mean")
    run.define_metric("train/special", summary="first")  # an exact name wins over a glob
    run.define_metric("lr", summary="none")
    run.define_metric("val", summary="min,max,last")
    run.define_metric("epoch_loss", step_metric="epoch")
    with pytest.raises(shim.UsageError, match="median"):
        run.define_metric("x", summary="median")
    for i, (loss, acc) in enumerate([(3.0, 0.1), (1.0, 0.7), (2.0, 0.4)]):
        run.log(
            {
                "loss": loss,
                "acc": acc,
                "train/a": float(i),
                "train/b": 10.0 * i,
                "train/special": 5.0 + i,
                "lr": 0.1,
                "val": [4.0, -1.0, 2.5][i],
                "epoch_loss": 9.0 - i,
                "epoch": i,
            }
        )
    expected = {
        "loss": {"min": 1},
        "acc": {"max": 0.7},
        "train/a": {"mean": 1},
        "train/b": {"mean": 10},
        "train/special": {"first": 5},
        "val": {"min": -1, "max": 4, "last": 2.5},
        "epoch_loss": 7,
        "epoch": 2,
    }
    assert dict(run.summary.items()) == expected
    run.finish()
    api_run = stored(shim, run)
    assert api_run.summary == expected
    definitions = {d["name"]: d for d in api_run.metric_definitions}
    assert definitions["epoch_loss"]["step_metric"] == "epoch"
    assert definitions["train/*"]["summary"] == ["mean"]


# --------------------------------------------------------------------------------------------------- reinit


def test_reinit_default_returns_the_active_run(daemon: DaemonProcess, shim: Any) -> None:
    first = shim.init(project="p", id="only1")
    again = shim.init(project="p", id="other")
    assert again is first
    assert shim.init(project="p", reinit="return_previous") is first
    first.log({"x": 1})
    first.finish()
    assert [r.id for r in shim.Api().runs("p")] == ["only1"]


def test_reinit_finish_previous(daemon: DaemonProcess, shim: Any) -> None:
    first = shim.init(project="p", id="fp1")
    first.log({"x": 1})
    second = shim.init(project="p", id="fp2", reinit="finish_previous")
    assert second is not first and second.id == "fp2"
    assert stored(shim, first).state == "finished"
    third = shim.init(project="p", id="fp3", reinit=True)
    assert stored(shim, second).state == "finished"
    assert shim.run is third
    third.finish()
    assert shim.run is None
    assert sorted(r.id for r in shim.Api().runs("p")) == ["fp1", "fp2", "fp3"]


def test_reinit_create_new_runs_concurrently(daemon: DaemonProcess, shim: Any) -> None:
    a = shim.init(project="p", id="cn-a", config={"which": "a"})
    b = shim.init(project="p", id="cn-b", config={"which": "b"}, reinit="create_new")
    assert shim.run is b and shim.config is b.config
    for i in range(3):
        a.log({"v": i})
        b.log({"v": 10 + i})
    shim.log({"w": 1})  # module-level calls go to the newest run
    a.finish()
    assert shim.run is b
    assert stored(shim, a).state == "finished"
    assert stored(shim, b).state == "running"
    b.finish()
    assert shim.run is None
    assert rows_by_step(shim, a) == {0: {"v": 0}, 1: {"v": 1}, 2: {"v": 2}}
    assert rows_by_step(shim, b) == {0: {"v": 10}, 1: {"v": 11}, 2: {"v": 12}, 3: {"w": 1}}
    assert stored(shim, a).config == {"which": "a"}
    assert stored(shim, b).config == {"which": "b"}


# --------------------------------------------------------------------------------------------------- modes


def test_mode_disabled_is_a_cheap_no_op_without_a_daemon(env: dict[str, str], shim: Any) -> None:
    from trackio_shim.session import client as client_module

    home = Path(env["TRACKIOD_HOME"])
    run = shim.init(project="p", mode="disabled", config={"lr": 0.1})
    assert run.disabled is True and shim.run is run
    assert run.config.lr == 0.1
    run.config.update({"lr": 0.2}, allow_val_change=True)
    run.summary["best"] = 1.0
    assert run.summary["best"] == 1.0
    run.define_metric("loss", summary="min")
    started = time.perf_counter()
    for i in range(20_000):
        shim.log({"loss": 1.0, "i": i})
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"20,000 disabled log() calls took {elapsed:.3f}s"
    run.log({"x": object()}, step=3, commit=False)  # not even encoded
    shim.finish()
    assert shim.run is None
    assert client_module.current_client() is None
    assert not home.exists(), "disabled mode wrote to the data directory"


def test_mode_disabled_from_environment(env: dict[str, str], shim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from trackio_shim.session import client as client_module

    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = shim.init(project="p")
    assert run.disabled is True
    run.log({"a": 1})
    run.finish()
    assert client_module.current_client() is None


def test_mode_offline_is_stored_as_offline(daemon: DaemonProcess, shim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = shim.init(project="p", id="off1", mode="offline")
    assert run.offline is True
    run.log({"x": 1})
    run.finish()
    api_run = stored(shim, run)
    assert api_run.mode == "offline"
    assert rows_by_step(shim, run) == {0: {"x": 1}}

    monkeypatch.setenv("WANDB_MODE", "offline")
    from_env = shim.init(project="p", id="off2")
    from_env.finish()
    assert stored(shim, from_env).mode == "offline"
    online = shim.init(project="p", id="on1", mode="online")  # the argument wins
    online.finish()
    assert stored(shim, online).mode == "online"


# --------------------------------------------------------------------------------------------------- environment


_ENV_FIELDS = {
    "PROJECT": "env-project",
    "NAME": "env-name",
    "RUN_ID": "envid01",
    "RUN_GROUP": "env-group",
    "JOB_TYPE": "env-job",
    "TAGS": "alpha, beta,gamma",
    "NOTES": "notes from the environment",
}


@pytest.mark.parametrize("prefix", ["WANDB_", "TRACKIOD_"])
def test_environment_variables(
    daemon: DaemonProcess, shim: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefix: str
) -> None:
    for field, value in _ENV_FIELDS.items():
        monkeypatch.setenv(prefix + field, value)
    monkeypatch.setenv(prefix + "DIR", str(tmp_path / "files"))
    run = shim.init()
    assert (run.project, run.id, run.name) == ("env-project", "envid01", "env-name")
    assert (run.group, run.job_type, run.notes) == ("env-group", "env-job", "notes from the environment")
    assert run.tags == ("alpha", "beta", "gamma")
    assert Path(run.dir).is_relative_to(tmp_path / "files")
    run.finish()
    api_run = shim.Api().run("env-project/envid01")
    assert (api_run.name, api_run.group, api_run.job_type) == ("env-name", "env-group", "env-job")
    assert api_run.tags == ["alpha", "beta", "gamma"]
    assert api_run.notes == "notes from the environment"

    # RESUME: the same id again needs resume; "must" from the environment resumes it.
    monkeypatch.setenv(prefix + "RESUME", "must")
    resumed = shim.init()
    assert resumed.id == "envid01" and resumed.resumed is True
    resumed.finish()
    monkeypatch.setenv(prefix + "RUN_ID", "missing01")
    with pytest.raises(shim.RunNotFoundError):
        shim.init()


def test_explicit_arguments_win_over_environment(
    daemon: DaemonProcess, shim: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for prefix in ("WANDB_", "TRACKIOD_"):
        for field, value in _ENV_FIELDS.items():
            monkeypatch.setenv(prefix + field, f"{prefix}{value}".replace(",", ""))
        monkeypatch.setenv(prefix + "RESUME", "must")
        monkeypatch.setenv(prefix + "MODE", "disabled")
        monkeypatch.setenv(prefix + "DIR", str(tmp_path / prefix))
    run = shim.init(
        project="arg-project",
        name="arg-name",
        id="argid01",
        group="arg-group",
        job_type="arg-job",
        tags=["t1"],
        notes="arg notes",
        resume="never",
        mode="online",
        dir=tmp_path / "argdir",
    )
    assert (run.project, run.id, run.name, run.group, run.job_type) == (
        "arg-project",
        "argid01",
        "arg-name",
        "arg-group",
        "arg-job",
    )
    assert run.tags == ("t1",) and run.notes == "arg notes" and run.mode == "online"
    assert Path(run.dir).is_relative_to(tmp_path / "argdir")
    run.finish()
    api_run = shim.Api().run("arg-project/argid01")
    assert api_run.tags == ["t1"] and api_run.group == "arg-group" and api_run.state == "finished"


def test_trackiod_variables_win_over_wandb_variables(
    daemon: DaemonProcess, shim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our choice: when both are set, the TRACKIOD_* spelling wins (it is the more specific one).
    monkeypatch.setenv("WANDB_PROJECT", "from-wandb")
    monkeypatch.setenv("TRACKIOD_PROJECT", "from-trackiod")
    monkeypatch.setenv("WANDB_NAME", "wandb-name")
    run = shim.init()
    assert run.project == "from-trackiod"
    assert run.name == "wandb-name"
    run.finish()


# --------------------------------------------------------------------------------------------------- misc surface


def test_unknown_init_kwargs_warn_once(daemon: DaemonProcess, shim: Any) -> None:
    with pytest.warns(UserWarning, match="bogus_option_zz"):
        run = shim.init(project="p", bogus_option_zz=3)
    run.log({"x": 1})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        second = shim.init(project="p", bogus_option_zz=4, reinit="finish_previous")
    assert matching(record, "bogus_option_zz") == []
    second.finish()
    assert rows_by_step(shim, run) == {0: {"x": 1}}
    assert stored(shim, run).state == "finished"


def test_login_and_settings_are_no_ops(daemon: DaemonProcess, shim: Any) -> None:
    assert shim.login() is True
    assert shim.login(key="abc", relogin=True, anonymous="never") is True
    settings = shim.Settings(init_timeout=90, x_disable_stats=True, console="off")
    run = shim.init(project="p", settings=settings, entity="someone")
    run.log({"x": 1})
    run.finish()
    assert stored(shim, run).state == "finished"


def test_log_before_init_is_a_usage_error(env: dict[str, str], shim: Any) -> None:
    with pytest.raises(shim.UsageError):
        shim.log({"x": 1})
    with pytest.raises(shim.UsageError):
        shim.define_metric("x", summary="min")
    shim.finish()  # a no-op without a run


def test_run_as_context_manager(daemon: DaemonProcess, shim: Any) -> None:
    with shim.init(project="p", id="ctx-ok") as run:
        run.log({"x": 1})
    assert shim.run is None
    ok = stored(shim, run)
    assert (ok.state, ok.exit_code) == ("finished", 0)

    with pytest.raises(ValueError, match="inside"), shim.init(project="p", id="ctx-bad") as bad:
        bad.log({"x": 2})
        raise ValueError("inside the block")
    failed = stored(shim, bad)
    assert (failed.state, failed.exit_code) == ("failed", 1)
    assert rows_by_step(shim, bad) == {0: {"x": 2}}


def test_finish_with_exit_code(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    run.log({"x": 1})
    shim.finish(exit_code=2)
    api_run = stored(shim, run)
    assert (api_run.state, api_run.exit_code) == ("failed", 2)
    assert api_run.ended_at is not None


_SCRIPT_PREFIX = """
import trackio_shim as wandb
run = wandb.init(project="scripts", id={run_id!r})
for i in range(5):
    wandb.log({{"x": i}})
"""


def test_uncaught_exception_marks_the_run_failed(daemon: DaemonProcess, shim: Any, env: dict[str, str]) -> None:
    result = run_script(_SCRIPT_PREFIX.format(run_id="boom1") + "raise RuntimeError('boom')\n", env, check=False)
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    api_run = shim.Api().run("scripts/boom1")
    assert (api_run.state, api_run.exit_code) == ("failed", 1)
    assert [r["x"] for r in api_run.scan_history()] == [0, 1, 2, 3, 4]


def test_sys_exit_code_is_recorded(daemon: DaemonProcess, shim: Any, env: dict[str, str]) -> None:
    result = run_script(_SCRIPT_PREFIX.format(run_id="exit3") + "import sys\nsys.exit(3)\n", env, check=False)
    assert result.returncode == 3
    api_run = shim.Api().run("scripts/exit3")
    assert (api_run.state, api_run.exit_code) == ("failed", 3)


def test_atexit_finishes_an_unfinished_run(daemon: DaemonProcess, shim: Any, env: dict[str, str]) -> None:
    result = run_script(_SCRIPT_PREFIX.format(run_id="atexit1") + "print('done')\n", env)
    assert result.stdout.strip() == "done"
    api_run = shim.Api().run("scripts/atexit1")
    assert (api_run.state, api_run.exit_code) == ("finished", 0)
    assert [r["x"] for r in api_run.scan_history()] == [0, 1, 2, 3, 4]
    assert api_run.summary == {"x": 4}


# --------------------------------------------------------------------------------------------------- Api


def test_api_runs_and_fields(daemon: DaemonProcess, shim: Any) -> None:
    before = datetime.now(timezone.utc).timestamp()
    first = shim.init(
        project="api", id="api1", name="first", config={"lr": 0.1}, tags=["x", "y"], group="g1", job_type="train"
    )
    first.log({"loss": 1.0})
    first.finish()
    second = shim.init(project="api", id="api2", name="second", notes="n")
    second.log({"loss": 2.0})
    other = shim.init(project="elsewhere", id="else1", reinit="create_new")
    other.finish()

    runs = shim.Api().runs("api")
    assert [r.id for r in runs] == ["api2", "api1"]  # newest first
    assert [r.id for r in shim.Api().runs("someone/api")] == ["api2", "api1"]
    assert {r.id for r in shim.Api().runs()} == {"api1", "api2", "else1"}
    assert sorted(shim.Api().projects()) == ["api", "elsewhere"]

    one = shim.Api().run("api/api1")
    assert (one.id, one.name, one.project, one.state) == ("api1", "first", "api", "finished")
    assert one.config == {"lr": 0.1}
    assert one.summary == {"loss": 1}
    assert one.tags == ["x", "y"]
    assert (one.group, one.job_type) == ("g1", "train")
    assert one.path == "api/api1"
    created = datetime.fromisoformat(one.created_at).timestamp()
    assert before - 1 <= created <= time.time() + 1
    assert shim.Api().run("entity/api/api2").state == "running"
    second.finish()
    assert shim.Api().run("entity/api/api2").state == "finished"

    with pytest.raises(shim.RunNotFoundError):
        shim.Api().run("api/nope")
    with pytest.raises(shim.UsageError):
        shim.Api().run("just-one-part")


def test_api_history_sampling_and_scan_history(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="api", id="hist1")
    for i in range(100):
        data: dict[str, Any] = {"x": 2 * i}
        if i % 2 == 0:
            data["even"] = i
        run.log(data)
    run.finish()
    api_run = shim.Api().run("api/hist1")

    sampled = api_run.history(samples=10, pandas=False)
    assert isinstance(sampled, list) and 2 <= len(sampled) <= 10
    steps = [r["_step"] for r in sampled]
    assert steps[0] == 0 and steps[-1] == 99 and steps == sorted(set(steps))
    assert all(r["x"] == 2 * r["_step"] for r in sampled)
    assert all({"_step", "_timestamp", "_runtime", "x"} <= set(r) for r in sampled)

    everything = api_run.history(samples=1000, pandas=False)
    assert [r["_step"] for r in everything] == list(range(100))
    only_even = api_run.history(samples=500, keys=["even"], pandas=False)
    assert [r["_step"] for r in only_even] == list(range(0, 100, 2))

    full = list(api_run.scan_history())
    assert len(full) == 100
    assert full[3] == {"_step": 3, "x": 6, "_timestamp": full[3]["_timestamp"], "_runtime": full[3]["_runtime"]}
    assert full[0]["_timestamp"] <= full[-1]["_timestamp"]
    assert full[-1]["_runtime"] >= 0
    assert [r["_step"] for r in api_run.scan_history(keys=["even"])] == list(range(0, 100, 2))
    assert [r["even"] for r in api_run.scan_history(keys=["even", "x"], min_step=10, max_step=20)] == [
        10,
        12,
        14,
        16,
        18,
    ]  # wandb: max_step is exclusive
    assert [r["_step"] for r in api_run.scan_history(min_step=97)] == [97, 98, 99]
    assert [r["_step"] for r in api_run.scan_history(max_step=3)] == [0, 1, 2]
    assert list(api_run.scan_history(keys=["missing"])) == []


def test_api_works_with_the_daemon_stopped(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p", id="stopped1", config={"a": 1})
    run.log({"x": 1})
    run.log({"x": 2})
    run.finish()
    assert daemon.terminate() == 0
    api_run = shim.Api().run("p/stopped1")
    assert api_run.state == "finished"
    assert api_run.config == {"a": 1}
    assert [r["x"] for r in api_run.scan_history()] == [1, 2]
    assert [r.id for r in shim.Api().runs("p")] == ["stopped1"]


# --------------------------------------------------------------------------------------------------- edge cases


def test_resume_keeps_summary_aggregates_and_metric_definitions(daemon: DaemonProcess, shim: Any) -> None:
    first = shim.init(project="p", id="ressum")
    first.define_metric("loss", summary="min,max")
    for loss in (5.0, 2.0, 4.0):
        first.log({"loss": loss, "epoch": 1})
    first.summary["best_epoch"] = 1
    first.finish()

    second = shim.init(project="p", id="ressum", resume="allow")
    for loss in (3.0, 1.0, 6.0):
        second.log({"loss": loss, "epoch": 2})
    assert second.summary["loss"] == {"min": 1, "max": 6}
    second.finish()
    assert second.summary["loss"] == {"min": 1, "max": 6}  # still readable after finish
    assert stored(shim, second).summary == {"loss": {"min": 1, "max": 6}, "epoch": 2, "best_epoch": 1}


def test_a_key_that_changes_type_keeps_every_value(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    run.log({"m": 1.5, "t": "first"})
    assert run.summary["m"] == 1.5  # waits for the commit: "m" is stored as a number before its first text
    run.log({"m": "n/a", "t": 2})
    run.log({"m": 3, "t": "third"})
    run.finish()
    assert rows_by_step(shim, run) == {0: {"m": 1.5, "t": "first"}, 1: {"m": "n/a", "t": 2}, 2: {"m": 3, "t": "third"}}
    assert [r["_step"] for r in stored(shim, run).scan_history(keys=["m"])] == [0, 1, 2]
    assert [r["_step"] for r in stored(shim, run).scan_history(keys=["m", "t"], min_step=1)] == [1, 2]


def test_invalid_project_name_is_a_usage_error(daemon: DaemonProcess, shim: Any) -> None:
    # The daemon refuses the name; init() raises instead of waiting out its timeout and logging into nothing.
    with pytest.raises(shim.UsageError, match="project"):
        shim.init(project="team/project")
    with pytest.raises(shim.UsageError, match="id"):
        shim.init(project="p", id="a/b")
    assert shim.run is None
    run = shim.init(project="p")  # the session still works
    run.log({"x": 1})
    run.finish()
    assert rows_by_step(shim, run) == {0: {"x": 1}}


def test_disabled_run_has_a_usable_dir(env: dict[str, str], shim: Any) -> None:
    # wandb gives a disabled run a temporary directory, so `os.path.join(run.dir, "model.pt")` keeps working.
    run = shim.init(project="p", mode="disabled")
    assert Path(run.dir).is_dir()
    run.finish()


def test_config_values_are_made_json_friendly(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(
        project="p", config={"path": Path("/data/x"), "arr": np.array([1, 2]), "f": np.float32(0.5), "t": (1, "a")}
    )
    expected = {"path": "/data/x", "arr": [1, 2], "f": 0.5, "t": [1, "a"]}
    assert run.config.as_dict() == expected
    run.finish()
    assert stored(shim, run).config == expected


def test_numpy_step_and_timestamps(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="p")
    before = time.time()
    run.log({"a": 1}, step=np.int64(4))
    run.log({"b": 2})
    after = time.time()
    run.finish()
    rows = list(stored(shim, run).scan_history())
    assert [r["_step"] for r in rows] == [4]
    assert rows[0]["a"] == 1 and rows[0]["b"] == 2
    assert before <= rows[0]["_timestamp"] <= after


def test_history_without_pandas_returns_dicts_with_a_warning(
    daemon: DaemonProcess, shim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trackio_shim import _warn as values

    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails, as where it is not installed
    monkeypatch.setattr(values, "_warned", set())
    run = shim.init(project="p")
    run.log({"x": 1})
    run.finish()
    with pytest.warns(UserWarning, match="pandas"):
        rows = stored(shim, run).history()
    assert [r["x"] for r in rows] == [1]


# --------------------------------------------------------------------------- resume rules under each name (issue 14)


def test_under_the_wandb_name_resume_allow_with_a_name_and_no_id_starts_a_new_run(
    daemon: DaemonProcess, shim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Lightning's WandbLogger passes for every fit: name, resume="allow", no id. wandb makes a new run
    each time (it resumes by id only); trackio_shim used to continue the newest run of that name."""
    from trackio_shim.switch import wandb

    runs = []
    for value in (1.0, 2.0):
        run = wandb.init(project="wb", name="fit", resume="allow")
        assert run.resumed is False and run.step == 0
        run.log({"loss": value})
        run.finish()
        runs.append(run)
    assert runs[0].id != runs[1].id
    stored_runs = {r.id: r for r in shim.Api().runs("wb")}
    assert sorted(stored_runs) == sorted(r.id for r in runs)
    assert [rows_by_step(shim, r) for r in runs] == [{0: {"loss": 1.0}}, {0: {"loss": 2.0}}]

    # By id, wandb resumes: so does the facade.
    again = wandb.init(project="wb", id=runs[0].id, resume="allow")
    assert again.resumed is True and again.step == 1
    again.finish()
    # resume="must" with no id is refused, as wandb refuses it, and the text says how to resume by name.
    with pytest.raises(shim.UsageError, match="resume_by='name'"):
        wandb.init(project="wb", name="fit", resume="must")
    # Resume by name when asked: the keyword, or the environment for code the user does not own.
    by_name = wandb.init(project="wb", name="fit", resume="allow", resume_by="name")
    assert by_name.id == runs[1].id and by_name.resumed is True
    by_name.finish()
    monkeypatch.setenv("TRACKIOD_RESUME_BY", "name")
    by_env = wandb.init(project="wb", name="fit", resume="must")
    assert by_env.id == runs[1].id
    by_env.finish()
    with pytest.raises(shim.UsageError, match="resume_by='sometimes'"):
        wandb.init(project="wb", resume="allow", resume_by="sometimes")


def test_under_the_trackio_name_runs_are_resumed_by_name(daemon: DaemonProcess, shim: Any) -> None:
    """trackio's rule (and trackio_shim's own): "allow" continues the newest run of that name, "never" (the
    default) starts another; trackio's Hub options are accepted, warned about only when given a value."""
    from trackio_shim.switch import trackio

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = trackio.init(project="tk", name="t", resume="allow", private=None, bucket_id=None, embed=True)
        assert matching(record, "Hugging Face option") == []
        assert trackio.context_vars.current_project.get() == "tk"
        assert trackio.context_vars.current_run.get() is first
        trackio.log({"x": 1})
        trackio.finish()
        again = trackio.init(project="tk", name="t", resume="allow", bucket_id="me/bucket")
        assert again.id == first.id and again.resumed is True and again.step == 1
        assert len(matching(record, "init(bucket_id=...) is a Hugging Face option")) == 1
        trackio.finish()
    assert trackio.context_vars.current_project.get() is None
    other = trackio.init(project="tk", name="t")
    assert other.id != first.id
    other.finish()
    with pytest.warns(UserWarning, match="nothing was published"):
        assert trackio.freeze(space_id="x") is None  # transformers calls it after training when a Space is set


def test_log_code_saves_the_source_files_with_the_run(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    code = tmp_path / "project"
    for name, text in {
        "train.py": "print('train')",
        "pkg/model.py": "MODEL = 1",
        "requirements.txt": "torch",
        "data.bin": "not code",
        ".venv/lib/x.py": "not mine",
        "__pycache__/train.cpython-311.py": "cache",
    }.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(text)
    run = shim.init(project="code", id="lc1")
    saved = run.log_code(root=code)
    assert sorted(Path(p).relative_to(code).as_posix() for p in saved) == [
        "pkg/model.py",
        "requirements.txt",
        "train.py",
    ]
    only_models = run.log_code(root=code, include_fn=lambda path, root: path.endswith("model.py"))
    assert [Path(p).name for p in only_models] == ["model.py"]
    run.finish()
    files = wait_for(lambda: (lambda f: f if len(f) == 3 else None)(shim.Api().run("code/lc1").files()))
    assert sorted(f["name"] for f in files) == ["pkg/model.py", "requirements.txt", "train.py"]


def test_wandbs_terminal_helpers_print_once_when_asked(shim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shim.termwarn("The run_name is the output_dir", repeat=False)
    shim.termwarn("The run_name is the output_dir", repeat=False)
    shim.termlog("hello")
    shim.termerror("bad", prefix=False)
    assert capsys.readouterr().err.splitlines() == [
        "trackiod: WARNING The run_name is the output_dir",
        "trackiod: hello",
        "bad",
    ]
    assert shim.require("service") is None and shim.setup() is None and shim.mark_preempting() is None
