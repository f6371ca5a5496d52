"""A team on one machine: two node daemons forwarding to a head over TCP on 127.0.0.1 with CURVE.

Everything is real (daemon processes, CURVE sockets, ZAP, SQLite files read back) and each fault is made the
way it happens: a node daemon killed with kill -9 and brought back by its trainer's autostart (which knows
nothing of forwarding: the node's role is in its data directory), the head killed with kill -9 and
restarted, a 2-node job killed and resubmitted with the same rendezvous within the head's heartbeat
timeout, a node whose key the head has not authorised yet, a node with a wrong head key. The head must end
with every point exactly once (the stored point counts equal the nodes'), one run per job, and rank 0's id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.support.cluster import flagged, stop_autostarted, stored
from tests.support.daemons import Daemons, wait_for
from tests.support.nodes import env_for_node, free_port, trackiod_keys
from tests.support.scripts import spawn_script
from trackio_shim.settings import TrackiodSettings
from trackiod.daemon import control

STEPS = 1200

_RANK = f"""
import os, pathlib, time, trackio_shim as wandb
job, rank = int(os.environ["JOB"]), int(os.environ["RANK"])
run = wandb.init(project="team", config={{"job": job}})
pathlib.Path(os.environ["OUT"]).write_text(run.id)
for step in range({STEPS}):
    run.log({{"x": float(job * 1_000_000 + rank * 100_000 + step)}}, step=step)
    if step == int(os.environ["MARK_AT"]):
        pathlib.Path(os.environ["MARK"]).touch()
        while not pathlib.Path(os.environ["GO"]).exists():
            time.sleep(0.05)
    if step % 25 == 0:
        time.sleep(float(os.environ["PACE"]))  # slow enough for the trainer to notice its daemon is gone
run.finish()
"""


def _status_text(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-m", "trackiod", "status"], env=env, capture_output=True, text=True, timeout=30
    ).stdout


def _node_status(env: dict[str, str]) -> dict[str, Any] | None:
    answer = control.request(TrackiodSettings.load(environ=env), "status", timeout=0.5)
    return answer[1] if answer else None


def _job(tmp_path: Path, nodes: list[dict[str, str]], job: int, port: int, mark_at: int, pace: float) -> list[Any]:
    """Start rank r of a 2-rank static-rendezvous job on node r (TORCHELASTIC_RUN_ID=none, as torchrun sets)."""
    procs = []
    for rank, node_env in enumerate(nodes):
        name = f"job{job}-rank{rank}"
        rank_env = {
            **node_env,
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "TORCHELASTIC_RUN_ID": "none",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "JOB": str(job),
            "OUT": str(tmp_path / f"{name}.id"),
            "MARK": str(tmp_path / f"{name}.mark"),
            "GO": str(tmp_path / f"job{job}.go"),
            "MARK_AT": str(mark_at),
            "PACE": str(pace),
            "TRACKIOD_AUTOSTART": "1",
            "TRACKIOD_SILENT": "1",
        }
        procs.append(spawn_script(_RANK, rank_env))
    return procs


def _forward(daemon: Any) -> dict[str, Any]:
    """The daemon's forward status, {} while it does not answer in time (a loaded machine: ask again)."""
    return ((daemon.status() or {}).get("forward")) or {}


def _listener(daemon: Any) -> dict[str, Any]:
    return ((daemon.status() or {}).get("listener")) or {}


def _by_job(runs: dict[str, dict[str, Any]]) -> dict[int, tuple[str, dict[str, Any]]]:
    """The runs of one daemon keyed by the job their values say they belong to (each run: one job only)."""
    out = {}
    for key, run in runs.items():
        jobs = {int(v // 1_000_000) for values, _ in run["ranks"].values() for v in values}
        assert len(jobs) == 1, f"run {key} mixes the points of jobs {sorted(jobs)}"
        out[jobs.pop()] = (key, run)
    return out


@pytest.mark.slow
def test_a_team_ends_exactly_once_on_the_head(env: dict[str, str], tmp_path: Path, daemons: Daemons) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": url}
    a_env, b_env = env_for_node(env, tmp_path, "a"), env_for_node(env, tmp_path, "b")
    a_key, b_key = trackiod_keys(a_env), trackiod_keys(b_env)
    head_key = trackiod_keys(head_env, "--authorize", a_key)  # b is not authorised yet
    for node_env in (a_env, b_env):
        trackiod_keys(node_env, "--head", head_key)
    head = daemons(head_env, tmp_path / "head.log").start()
    # Roles are set the documented way, by flags; nothing in the trainers' environment says "forward".
    a = flagged(daemons, a_env, tmp_path / "a.log", "--forward", url).start()
    b = flagged(daemons, b_env, tmp_path / "b.log", "--forward", url).start()
    try:
        # b is refused: said on both sides, in status JSON and text; it retries on its own once authorised.
        wait_for(lambda: _forward(b).get("state") == "refused", timeout=30, what="b to be refused")
        assert f"--authorize={b_key}" in wait_for(lambda: _forward(b).get("last_error"))
        assert wait_for(lambda: "refused" in _status_text(b_env), timeout=30)
        assert f"--authorize={b_key}" in (tmp_path / "b.log").read_text()
        listener = wait_for(lambda: _listener(head))
        assert listener["refused"] >= 1 and listener["last_refused_key"] == b_key
        assert wait_for(lambda: "refused" in _status_text(head_env), timeout=30)
        trackiod_keys(head_env, "--authorize", b_key)
        wait_for(lambda: _forward(b).get("state") == "connected", timeout=40, what="b to retry")

        # Job 1 is killed mid-run and resubmitted with the same rendezvous at once: on the head its remote
        # ranks still count as alive (heartbeat timeout 120 s), yet job 2 must not join its run.
        port = free_port()
        job1 = _job(tmp_path, [a_env, b_env], 1, port, mark_at=300, pace=0.02)
        for rank in (0, 1):
            wait_for((tmp_path / f"job1-rank{rank}.mark").exists, timeout=60, what=f"job 1 rank {rank} to log")
        for proc in job1:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        job2 = _job(tmp_path, [a_env, b_env], 2, port, mark_at=500, pace=0.15)
        wait_for((tmp_path / "job2-rank0.mark").exists, timeout=60, what="job 2 rank 0 to reach the kill point")
        # Node a's daemon and the head are killed; a's trainer autostarts a's daemon, which forwards.
        a.kill9()
        head.kill9()
        head.start()
        (tmp_path / "job2.go").touch()
        for proc in job2:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
        wait_for(lambda: _node_status(a_env) is not None, timeout=30, what="a's autostarted daemon")
        for node_env in (a_env, b_env):
            wait_for(
                lambda node_env=node_env: (_node_status(node_env) or {}).get("forward", {}).get("backlog") == 0,
                timeout=120,
                what="each node to forward everything",
            )
        on_head = _by_job(stored(head.home, "team"))
        assert sorted(on_head) == [1, 2]  # one run per job
        rank0_id = (tmp_path / "job2-rank0.id").read_text()
        assert on_head[2][0] == rank0_id  # the id rank 0 printed is the id on the head
        expected = [[float(2_000_000 + rank * 100_000 + s) for s in range(STEPS)] for rank in (0, 1)]
        assert {r: v for r, v in on_head[2][1]["ranks"].items()} == {rank: (expected[rank], STEPS) for rank in (0, 1)}
        # Every point exactly once: each rank's series on the head is its node's, values and stored counts.
        for rank, node_home in ((0, a.home), (1, b.home)):
            on_node = _by_job(stored(node_home, "team"))
            for job in (1, 2):
                assert on_head[job][1]["ranks"][rank] == on_node[job][1]["ranks"][0 if rank == 0 else 1]
        assert stored(a.home, "team")[rank0_id]["ranks"][0][1] == STEPS
        wait_for(lambda: stored(head.home, "team")[rank0_id]["state"] == "finished", timeout=30, what="job 2 to finish")
    finally:
        if _node_status(a_env) is not None and not a.alive:
            stop_autostarted(a_env)


@pytest.mark.slow
def test_a_wrong_head_key_is_said_on_both_sides_and_fixed_without_a_restart(
    env: dict[str, str], tmp_path: Path, daemons: Daemons
) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": url}
    node_env = env_for_node(env, tmp_path, "node")
    head_key = trackiod_keys(head_env, "--authorize", trackiod_keys(node_env))
    wrong = zmq.curve_keypair()[0].decode()
    trackiod_keys(node_env, "--head", wrong)
    head = daemons(head_env, tmp_path / "head.log").start()
    # This node's role comes from its environment, as a systemd unit's Environment= gives it: kept all the same.
    node = daemons({**node_env, "TRACKIOD_FORWARD": url}, tmp_path / "node.log").start()
    assert TrackiodSettings.load(environ=node_env).forward == url
    code = "import trackio_shim as w\nr = w.init(project='keys', id='r')\nfor i in range(10): r.log({'x': float(i)})\n"
    spawn_script(code + "r.finish()\n", {**node_env, "TRACKIOD_SILENT": "1"}).communicate(timeout=60)
    wait_for(
        lambda: _forward(node).get("state") == "handshake failed",
        timeout=30,
        what="the node to notice the failed handshake",
    )
    assert "trackiod keys --head=KEY" in wait_for(lambda: _forward(node).get("last_error"))
    assert wait_for(lambda: "handshake failed" in _status_text(node_env), timeout=30)
    wait_for(lambda: _listener(head).get("handshake_failures", 0) > 0, what="the head to see it")
    assert "failed the CURVE handshake" in (tmp_path / "head.log").read_text()
    assert stored(head.home, "keys") == {}
    trackiod_keys(node_env, "--head", head_key)  # fixed while the node daemon runs
    wait_for(lambda: _forward(node).get("backlog") == 0, timeout=30, what="the backlog to drain")
    assert stored(head.home, "keys")["r"]["ranks"] == {0: ([float(i) for i in range(10)], 10)}
    assert wait_for(lambda: _forward(node).get("state")) == "connected"


def test_start_says_why_a_forwarder_or_listener_cannot_start(env: dict[str, str], tmp_path: Path) -> None:
    node_env = env_for_node(env, tmp_path, "node")
    flag = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--forward", "tcp://127.0.0.1:1"],
        env=node_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flag.returncode == 1 and "trackiod keys" in flag.stderr
    assert not (Path(node_env["TRACKIOD_HOME"]) / "node.json").exists()  # a role that cannot start is not kept
    trackiod_keys(node_env)
    listen = subprocess.run(  # in the background: the reason is in the daemon's log, and start repeats it
        [sys.executable, "-m", "trackiod", "start"],
        env={**node_env, "TRACKIOD_LISTEN": "tcp://127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listen.returncode == 1 and "--authorize" in listen.stderr
