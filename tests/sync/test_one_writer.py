"""One writer per run: a node that forwards to a head leaves sync to the head, so no row is written twice.

The Hugging Face Hub cannot be reached from the test machines, so it is FAKED here by
trackiod.testing.folder_hub.FolderHub (``TRACKIOD_HUB=folder:<tmp>``, shared by both daemons, as one dataset on
the Hub would be). Everything else is real: a head daemon listening on 127.0.0.1 with CURVE keys, a node daemon
forwarding to it, a training script on the node, ``trackiod sync --now`` on both at once, Parquet read back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

from tests.support.daemons import Daemons, wait_for
from tests.support.nodes import env_for_node, free_port, trackiod_keys
from tests.support.scripts import run_script
from trackiod.read.connection import open_reader
from trackiod.read.runs import get_run, run_keys
from trackiod.read.series import read_series
from trackiod.testing.folder_hub import FolderHub

REPO = "me/team"
STEPS = 2000


def _head_points(home: Path) -> int:
    db = home / "trackiod.db"
    if not db.exists():
        return 0
    conn = open_reader(db)
    try:
        run = get_run(conn, "team", "r1")
        if run is None or run["state"] != "finished":
            return 0
        keys = run_keys(conn, run["id"])
        return sum(read_series(conn, run["id"], keys[k][0])[0].size for k in ("x", "y") if k in keys)
    finally:
        conn.close()


def test_node_and_head_syncing_at_once_write_each_row_once(
    env: dict[str, str], tmp_path: Path, daemons: Daemons
) -> None:
    hub = FolderHub(tmp_path / "hub")
    sync = {"TRACKIOD_HUB": f"folder:{hub.root}", "TRACKIOD_SYNC_DATASET": REPO, "TRACKIOD_SYNC_INTERVAL_S": "3600"}
    port = free_port()
    head_env = {**env_for_node(env, tmp_path, "head"), **sync, "TRACKIOD_LISTEN": f"tcp://127.0.0.1:{port}"}
    node_env = {**env_for_node(env, tmp_path, "node"), **sync, "TRACKIOD_FORWARD": f"tcp://127.0.0.1:{port}"}
    node_key = trackiod_keys(node_env)
    head_key = trackiod_keys(head_env, "--authorize", node_key)
    trackiod_keys(node_env, "--head", head_key)
    head = daemons(head_env, tmp_path / "head.log").start()
    node = daemons(node_env, tmp_path / "node.log").start()
    run_script(
        f"import trackio_shim as w\nr = w.init(project='team', id='r1')\n"
        f"for i in range({STEPS}):\n    r.log({{'x': float(i), 'y': i * 0.5}}, step=i)\nr.finish()\n",
        {**node.env, "TRACKIOD_SILENT": "1"},
    )
    wait_for(lambda: _head_points(head.home) == 2 * STEPS, timeout=60, what="every point on the head")
    both = [
        subprocess.Popen([sys.executable, "-m", "trackiod", "sync", "--now"], env=e, stdout=subprocess.PIPE, text=True)
        for e in (node.env, head.env)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    glob = str(hub.revision_dir(REPO) / "points" / "**" / "*.parquet")
    rows, distinct = duckdb.sql(f"SELECT count(*), count(DISTINCT (run_id, key, seq)) FROM '{glob}'").fetchone() or (
        0,
        0,
    )
    assert (rows, distinct) == (2 * STEPS, 2 * STEPS)
    runs = duckdb.sql(f"SELECT count(*) FROM '{hub.revision_dir(REPO) / 'runs' / '**' / '*.parquet'}'").fetchone()
    assert runs == (1,)
    status = subprocess.run(
        [sys.executable, "-m", "trackiod", "status"], env=node.env, capture_output=True, text=True, timeout=60
    ).stdout
    assert "left to the head" in status, status
