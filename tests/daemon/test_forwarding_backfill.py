"""A node that stored runs before it ever had a role, then set to forward: the head gets them, exactly once.

Real daemons on 127.0.0.1 with CURVE keys made by `trackiod keys`. The node first runs without a role: a
finished run (a plain series, a context series, a text, a summary), a finished 2-rank run, and a run whose
trainer is still logging. Its daemon is then restarted with `trackiod start --forward`; the trainer goes on
logging through the new daemon. While the backlog crosses, the head and then the node's daemon are killed
with kill -9 and restarted. The head must end with every run, each rank's series equal to the node's, values
and stored point counts (a frame applied twice would count twice), the context series and the text, and each
run in the node's state. The same when the first daemon with the role is a trainer's autostart. A run the node
had synced to a dataset itself is left to the dataset (one writer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import flagged, stop_autostarted, stored
from tests.support.daemons import Daemons, wait_for
from tests.support.nodes import env_for_node, free_port, trackiod_keys
from tests.support.scripts import run_script, spawn_script
from trackiod.daemon.backfill import prepare_journal
from trackiod.daemon.node_role import remember_role
from trackiod.read.connection import open_reader
from trackiod.read.contexts import context_series
from trackiod.read.runs import get_run
from trackiod.read.series import read_texts
from trackiod.store.writer import Store

STEPS = 2000

_DONE = f"""
import trackio_shim as wandb
run = wandb.init(project="pre", id="done", config={{"lr": 0.1}})
for step in range({STEPS}):
    run.log({{"x": float(step), "y": step * 0.5}}, step=step)
    if step % 10 == 0:
        run.log({{"x": float(-step)}}, step=step, context={{"subset": "val"}})
run.log({{"note": "hello"}}, step={STEPS})
run.summary["best"] = 7.5
run.finish()
"""

_RANK = f"""
import os, trackio_shim as wandb
rank = int(os.environ["RANK"])
run = wandb.init(project="pre", config={{"job": 1}})
for step in range({STEPS // 2}):
    run.log({{"x": float(rank * 100_000 + step)}}, step=step)
run.finish()
"""

_LIVE = f"""
import os, pathlib, time, trackio_shim as wandb
run = wandb.init(project="pre", id="live")
run.config.update({{"extra": 1}})  # a frame the backfill folds into the run's start: its sequence shifts
run.summary["seen"] = 1
for step in range({STEPS}):
    run.log({{"x": float(step)}}, step=step)
    if step == {STEPS // 2}:
        pathlib.Path(os.environ["MARK"]).touch()
        while not pathlib.Path(os.environ["GO"]).exists():
            time.sleep(0.05)
    if step % 100 == 0:
        time.sleep(0.05)
run.finish()
"""


def _contexts_and_texts(home: Path) -> dict[str, Any]:
    conn = open_reader(home / "trackiod.db")
    try:
        run = get_run(conn, "pre", "done")
        out: dict[str, Any] = {"config": run["config"], "best": run["summary"].get("best"), "state": run["state"]}
        for ctx, (steps, _, values) in context_series(conn, run["id"], "x", {"subset": "val"}):
            out[json.dumps(ctx)] = (steps.tolist(), values.tolist())
        (note,) = conn.execute("SELECT id FROM keys WHERE name='note'").fetchone()
        out["note"] = read_texts(conn, run["id"], note)[2]
        return out
    finally:
        conn.close()


def _complete(head_home: Path, node_home: Path) -> bool:
    node, head = stored(node_home, "pre"), stored(head_home, "pre")
    return bool(head) and head == node


@pytest.mark.slow
def test_runs_stored_before_the_role_reach_the_head_exactly_once(
    env: dict[str, str], tmp_path: Path, daemons: Daemons
) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": url}
    node_env = env_for_node(env, tmp_path, "node")
    node_key = trackiod_keys(node_env)
    trackiod_keys(node_env, "--head", trackiod_keys(head_env, "--authorize", node_key))
    head = daemons(head_env, tmp_path / "head.log").start()
    plain = daemons(node_env, tmp_path / "node.log").start()  # no role: stores, journals nothing
    quiet = {**node_env, "TRACKIOD_SILENT": "1"}
    run_script(_DONE, quiet)
    for rank in (0, 1):
        spawn_rank = {**quiet, "RANK": str(rank), "WORLD_SIZE": "2", "TRACKIOD_JOB_ID": "job-1"}
        run_script(_RANK, spawn_rank)
    live = spawn_script(_LIVE, {**quiet, "MARK": str(tmp_path / "mark"), "GO": str(tmp_path / "go")})
    wait_for((tmp_path / "mark").exists, timeout=60, what="the live run to log half its steps")
    assert (plain.status() or {}).get("forward") is None
    plain.terminate()

    node = flagged(daemons, node_env, tmp_path / "node.log", "--forward", url).start()
    (tmp_path / "go").touch()  # the live trainer goes on, through the forwarding daemon
    wait_for(lambda: stored(head.home, "pre"), timeout=60, what="backfilled runs on the head")
    head.kill9()
    head.start()
    node.kill9()
    node = daemons(node_env, tmp_path / "node.log").start()  # no flag: the role is in node.json
    _, err = live.communicate(timeout=120)
    assert live.returncode == 0, err
    wait_for(lambda: _complete(head.home, node.home), timeout=120, what="the head to hold every run as the node")
    node_runs = stored(node.home, "pre")
    assert set(node_runs) >= {"done", "live"} and len(node_runs) == 3
    assert all(run["state"] == "finished" for run in stored(head.home, "pre").values())
    ranked = [run for key, run in node_runs.items() if key not in ("done", "live")]
    assert len(ranked) == 1 and set(ranked[0]["ranks"]) == {0, 1}
    assert node_runs["live"]["ranks"][0] == ([float(s) for s in range(STEPS)], STEPS)
    assert _contexts_and_texts(head.home) == _contexts_and_texts(node.home)
    assert _contexts_and_texts(head.home)["best"] == 7.5
    conn = open_reader(head.home / "trackiod.db")
    try:
        live_run = get_run(conn, "pre", "live")
        assert live_run["config"] == {"extra": 1} and live_run["summary"]["seen"] == 1
    finally:
        conn.close()
    wait_for(lambda: (node.status() or {}).get("forward", {}).get("backlog") == 0, what="an empty journal")


_SHORT = """
import os, trackio_shim as wandb
run = wandb.init(project="auto", id=os.environ["RUN_ID"])
for step in range(300):
    run.log({"x": float(step)}, step=step)
run.finish()
"""


@pytest.mark.slow
def test_the_daemon_a_trainer_autostarts_backfills_too(env: dict[str, str], tmp_path: Path, daemons: Daemons) -> None:
    """The role stored while no daemon runs; the first daemon is a trainer's autostart: it journals the old run."""
    url = f"tcp://127.0.0.1:{free_port()}"
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": url}
    node_env = env_for_node(env, tmp_path, "node")
    trackiod_keys(node_env, "--head", trackiod_keys(head_env, "--authorize", trackiod_keys(node_env)))
    head = daemons(head_env, tmp_path / "head.log").start()
    plain = daemons(node_env, tmp_path / "node.log").start()
    run_script(_SHORT, {**node_env, "TRACKIOD_SILENT": "1", "RUN_ID": "before"})
    plain.terminate()
    remember_role(Path(node_env["TRACKIOD_HOME"]), forward=url)  # as `trackiod start --forward` stores it
    try:
        run_script(_SHORT, {**node_env, "TRACKIOD_SILENT": "1", "TRACKIOD_AUTOSTART": "1", "RUN_ID": "after"})
        node_home = Path(node_env["TRACKIOD_HOME"])
        wait_for(lambda: _complete_in(head.home, node_home, "auto", 2), timeout=90, what="both runs on the head")
    finally:
        stop_autostarted(node_env)


def _complete_in(head_home: Path, node_home: Path, project: str, runs: int) -> bool:
    head = stored(head_home, project)
    return len(head) == runs and head == stored(node_home, project)


def test_a_run_the_node_synced_itself_is_left_to_the_dataset(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "node"
    home.mkdir(mode=0o700)
    store = Store(home / "trackiod.db")
    try:
        store.begin()
        for key in ("synced", "fresh"):
            store.create_run("p", key, key, {}, {}, None, None)
        store.commit()
        sync_dir = home / "sync"
        sync_dir.mkdir()
        (sync_dir / "org--ds.json").write_text(
            json.dumps({"repo": "org/ds", "source": "abc", "tick": 1, "marks": {"runs": {"p/synced": 1.0}}})
        )
        assert prepare_journal(store, sync_dir) == {}
        frames = [bytes(f) for (f,) in store.conn.execute("SELECT frame FROM forward_journal")]
        assert any(b"fresh" in f for f in frames) and not any(b"synced" in f for f in frames)
        assert prepare_journal(store, sync_dir) == {}  # once: a second daemon journals nothing again
        assert len(list(store.conn.execute("SELECT id FROM forward_journal"))) == len(frames)
    finally:
        store.conn.close()
