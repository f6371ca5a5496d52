"""One poisoned call never poisons a session (issue 18, findings 1 and 7; docs/robustness.md).

A real training script in a fresh interpreter logs, sets config and summary with every odd value a user can
pass, between good calls; a real daemon stores the run and the test reads it back through ``Api()``: every good
point and the run's finish must arrive, the script must not raise, and each bad key must be named in a warning.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess
from tests.support.scripts import run_script

POISON = r"""
import collections, json, sys, warnings
warnings.simplefilter("always")
import trackio_shim as wandb

class Hostile:
    def __float__(self): raise RuntimeError("no float")
    def __repr__(self): raise RuntimeError("no repr")
    def __str__(self): raise RuntimeError("no str")

class HostileKey:
    def __hash__(self): return 1
    def __eq__(self, other): return self is other
    def __repr__(self): raise RuntimeError("no repr")
    def __str__(self): raise RuntimeError("no str")

Point = collections.namedtuple("Point", "x y")
deep = {}
node = deep
for _ in range(2000):
    node["d"] = {}
    node = node["d"]
node["leaf"] = 1.0
loop = {"a": 1.0}
loop["self"] = loop
poison = {
    "tuple_key": {("layer", 1): 1.0},
    "nested_tuple_key": {"outer": {("a", "b"): 2.0}},
    "namedtuple_key": {Point(1, 2): 3.0},
    "int_key": {7: 1.0},
    "bytes_key": {b"raw": 1.0},
    "surrogate_key": {"bad\udc80key": 1.0},
    "bytes_value": {"bv": b"\x00\x01"},
    "set_value": {"sv": {1, 2}},
    "tuple_value": {"tv": (1, 2)},
    "deep": deep,
    "loop": loop,
    "huge_int": {"hi": 10**40},
    "hostile_value": {"hv": Hostile()},
    "hostile_key": {HostileKey(): 1.0},
    "surrogate_value": {"sv2": "x\udc80"},
}
try:
    import torch
    poison["meta"] = {"meta_scalar": torch.empty((), device="meta"), "meta_vec": torch.empty(100, device="meta")}
except ImportError:
    pass

run = wandb.init(project="poison", id="p1", config={("cfg", 1): 1, "deep": deep, "loop": loop,
                                                  "hostile": Hostile(), "huge": 10**40, "ok": 3})
errors = []
step = 0
for name, bad in poison.items():
    for _ in range(3):  # the same poison again: one warning per cause, and the session goes on
        try:
            wandb.log({**bad, "ok": float(step)})
            step += 1
        except BaseException as exc:
            errors.append(f"log {name}: {type(exc).__name__}: {exc}")
    for target in ("config", "summary"):
        try:
            getattr(run, target).update({**bad, f"{target}_ok_{name}": 1})
        except BaseException as exc:
            errors.append(f"{target} {name}: {type(exc).__name__}")
try:
    run.config["k" + "\udc80"] = 1
    run.summary[("s", 1)] = Hostile()
except BaseException as exc:
    errors.append(f"setitem: {type(exc).__name__}")
for _ in range(50):
    wandb.log({"ok": float(step)})
    step += 1
wandb.finish()
print(json.dumps({"steps": step, "errors": errors}))
"""


def _run(daemon: DaemonProcess, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    result = run_script(POISON, env, timeout=180)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_poisoned_values_never_cost_the_rest_of_the_session(daemon: DaemonProcess, env: dict[str, str]) -> None:
    from trackio_shim import Api

    report, stderr = _run(daemon, env)
    assert report["errors"] == [], report["errors"]
    run = Api().run("poison/p1")
    assert run.state == "finished"
    oks = sorted(row["ok"] for row in run.scan_history(keys=["ok"]))
    assert oks == [float(s) for s in range(report["steps"])], "a poisoned call cost good points"
    # Config and summary kept their good keys; bad ones are converted (as wandb does) or left out.
    assert run.config["ok"] == 3
    assert run.config["('cfg', 1)"] == 1
    assert run.config["huge"] == str(10**40)
    for name in ("tuple_key", "deep", "loop", "hostile_value", "surrogate_key"):
        assert run.config[f"config_ok_{name}"] == 1
        assert run.summary[f"summary_ok_{name}"] == 1
    # Each bad log() key is named once in a warning (the shim's, not only a daemon notice).
    for needle in ("('layer', 1)", "outer/('a', 'b')", "Point(x=1, y=2)", "udc80key", "tv", "sv", "hi"):
        assert needle in stderr, (needle, stderr[-3000:])
    status = daemon.status()
    assert status is not None and status["malformed_frames"] == 0, status["last_error"]


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_tuple_key_does_not_stop_later_frames(daemon: DaemonProcess, env: dict[str, str], where: str) -> None:
    """Finding 1: the frame with a tuple key could not be decoded, and every later frame of the process was
    refused as out of order (the run stayed `running`)."""
    from trackio_shim import Api

    code = f"""
import warnings
warnings.simplefilter("always")
import trackio_shim as wandb
wandb.init(project="poison", id="t-{where}")
for i in range(200):
    bad = {{("layer", 1): 1.0}} if "{where}" == "top" else {{"n": {{("layer", 1): 1.0}}}}
    wandb.log({{**(bad if i == 5 else {{}}), "ok": float(i)}})
wandb.finish()
"""
    result = run_script(code, env, timeout=120)
    run = Api().run(f"poison/t-{where}")
    assert run.state == "finished"
    assert len(list(run.scan_history(keys=["ok"]))) == 200
    assert "('layer', 1)" in result.stderr
