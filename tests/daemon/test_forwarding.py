"""Several nodes: two real daemons on this machine, a node forwarding to a head over TCP on 127.0.0.1 with CURVE.

Keys come from `trackiod keys`; a forwarder with an unauthorised key is refused; the forwarder is killed with
kill -9 mid-run and restarted, and the head ends up with every point exactly once. Everything is real: daemon
processes, ZeroMQ CURVE sockets, ZAP authentication, SQLite files read back.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemons import Daemons, wait_for
from tests.support.nodes import env_for_node, free_port, trackiod_keys
from tests.support.scripts import spawn_script
from trackiod.read.connection import open_reader
from trackiod.read.runs import get_run, list_runs, run_keys
from trackiod.read.series import read_series

STEPS = 3000


def _head_points(head_home: Path, project: str) -> list[float]:
    db = head_home / "trackiod.db"
    if not db.exists():
        return []
    conn = open_reader(db)
    try:
        runs = list_runs(conn, project)
        if not runs:
            return []
        keys = run_keys(conn, runs[0]["id"])
        if "x" not in keys:
            return []
        return [float(v) for v in read_series(conn, runs[0]["id"], keys["x"][0])[2]]
    finally:
        conn.close()


@pytest.fixture
def head_and_node(env: dict[str, str], tmp_path: Path, daemons: Daemons):  # type: ignore[no-untyped-def]
    port = free_port()
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": f"tcp://127.0.0.1:{port}"}
    node_env = {**env_for_node(env, tmp_path, "node"), "TRACKIOD_FORWARD": f"tcp://127.0.0.1:{port}"}
    node_key = trackiod_keys(node_env)
    head_key = trackiod_keys(head_env, "--authorize", node_key)
    trackiod_keys(node_env, "--head", head_key)
    head = daemons(head_env, tmp_path / "head.log").start()
    node = daemons(node_env, tmp_path / "node.log").start()
    return head, node, head_key, port


def test_keys_are_private_and_a_listener_without_keys_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    lone = {**env_for_node(env, tmp_path, "lone"), "TRACKIOD_LISTEN": f"tcp://127.0.0.1:{free_port()}"}
    result = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"],
        env=lone,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "trackiod keys" in result.stderr
    trackiod_keys(lone)
    result = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"],
        env=lone,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "--authorize" in result.stderr  # keys but nobody authorised: refused too
    secret = Path(lone["TRACKIOD_HOME"]) / "keys" / "node.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    bad = subprocess.run(
        [sys.executable, "-m", "trackiod", "keys", "--authorize", "short"], env=lone, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "40-character" in bad.stderr
    shim_tcp = {**lone, "TRACKIOD_LISTEN": "", "TRACKIOD_ENDPOINT": "tcp://127.0.0.1:1"}
    result = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"], env=shim_tcp, capture_output=True, text=True
    )
    assert result.returncode == 1 and "--forward" in result.stderr


_TRAIN = f"""
import os, pathlib, time, trackio_shim as wandb
run = wandb.init(project="fwd", id="r1", config={{"lr": 0.5}})
for step in range({STEPS}):
    run.log({{"x": float(step)}}, step=step)
    if step == {STEPS // 3}:
        pathlib.Path(os.environ["MARK"]).touch()
        time.sleep(1.0)  # the test kills the forwarding daemon around here
    if step % 50 == 0:
        time.sleep(0.05)  # paces the run, so the forwarder is killed mid-run
run.finish()
"""


@pytest.mark.slow
def test_forwarding_survives_kill9_of_the_forwarder(head_and_node, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    head, node, _, _ = head_and_node
    mark = tmp_path / "mark"
    trainer = spawn_script(_TRAIN, {**node.env, "MARK": str(mark), "TRACKIOD_SILENT": "1"})
    wait_for(mark.exists, timeout=60, what="the training script to reach the kill point")
    wait_for(lambda: len(_head_points(head.home, "fwd")) > 0, timeout=30, what="forwarded points on the head")
    node.kill9()
    node.start()
    _, err = trainer.communicate(timeout=120)
    assert trainer.returncode == 0, err
    wait_for(lambda: len(_head_points(head.home, "fwd")) >= STEPS, timeout=60, what="every point forwarded to the head")
    points = _head_points(head.home, "fwd")
    assert points == [float(s) for s in range(STEPS)]  # nothing lost, nothing twice, in order
    conn = open_reader(head.home / "trackiod.db")
    try:
        (run,) = list_runs(conn, "fwd")
        assert run["config"] == {"lr": 0.5}
        wait_for(lambda: get_run(conn, "fwd", "r1")["state"] == "finished", what="the head's run to finish")
    finally:
        conn.close()
    status = node.status()
    assert status is not None and status["forward"]["backlog"] == 0


def test_a_wrong_key_is_refused(head_and_node, env: dict[str, str], tmp_path: Path, daemons: Daemons) -> None:  # type: ignore[no-untyped-def]
    head, _, head_key, port = head_and_node
    rogue_env = {**env_for_node(env, tmp_path, "rogue"), "TRACKIOD_FORWARD": f"tcp://127.0.0.1:{port}"}
    trackiod_keys(rogue_env, "--head", head_key)  # knows the head's key, but the head never authorised its own
    rogue = daemons(rogue_env, tmp_path / "rogue.log").start()
    code = 'import trackio_shim as w\nr = w.init(project="rogue", id="r")\nr.log({"x": 1.0})\nr.finish()'
    proc = spawn_script(code, {**rogue_env, "TRACKIOD_SILENT": "1"})
    proc.communicate(timeout=60)
    wait_for(
        lambda: "unknown CURVE key" in (tmp_path / "head.log").read_text(),
        timeout=30,
        what="the head to refuse the rogue key",
    )
    status = rogue.status()
    assert status is not None and status["forward"]["acked"] == 0 and status["forward"]["backlog"] > 0
    assert _head_points(head.home, "rogue") == []
    assert os.path.exists(head.home / "trackiod.db")
