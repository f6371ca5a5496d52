"""Distributed runs in the dataset: every rank's series (context series included), the ranks, and a pull of what
sync and export wrote that restores them exactly.

The Hugging Face Hub cannot be reached from the test machines, so it is FAKED here by
trackiod.testing.folder_hub.FolderHub (``TRACKIOD_HUB=folder:<tmp>``), which applies the real huggingface_hub
commit operations to a folder. Everything else is real: a daemon process, two rank processes logging through the
shim, SQLite, Parquet, ``trackiod sync --now`` and ``trackiod pull``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest

from tests.support.daemons import Daemons, wait_for
from tests.support.scripts import spawn_script
from trackiod.cli import main as cli
from trackiod.read.connection import open_reader
from trackiod.read.ranks import rank_aggregates, rank_history, read_rank_series, run_ranks
from trackiod.read.runs import get_run, history_rows
from trackiod.store.codec import decode_floats, decode_steps
from trackiod.store.schema import RANK_KEY_OFFSET
from trackiod.testing.folder_hub import FolderHub

REPO = "me/ranks"

RANK = """
import os, pathlib, time, trackio_shim as wandb
rank = int(os.environ["R"])
sync = pathlib.Path(os.environ["SYNC"])
run = wandb.init(project="dist", id="job", rank=rank, world_size=2, config={"lr": 0.1})

def wait(name):
    deadline = time.time() + 60
    while not (sync / name).exists() and time.time() < deadline:
        time.sleep(0.05)

for phase, (first, last) in enumerate([(0, 300), (300, 700)]):
    for step in range(first, last):
        run.log({"loss": 1.0 / (step + 1) + rank, "tok": float(step * (rank + 1))}, step=step)
        if step % 100 == 0:
            run.log({"note": f"r{rank}-s{step}"}, step=step)
        if step % 10 == 0:  # metric-context series, a number and a text, on every rank
            run.log({"acc": step * 0.01 + rank, "why": f"c{rank}-{step}"}, step=step, context={"subset": "val"})
    run.log({"loss": float("nan") if rank else 7.0}, step=first + 5)  # an overwrite, NaN on rank 1
    (sync / f"phase{phase}-rank{rank}").touch()
    wait(f"go{phase}")
run.finish()
"""


def _sync_now() -> None:
    assert cli(["sync", "--now"]) == 0


def test_pull_of_a_multi_rank_run_is_exact_with_ranks_and_aggregates(
    env: dict[str, str], tmp_path: Path, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FolderHub(tmp_path / "hub")
    values = {"TRACKIOD_HUB": f"folder:{hub.root}", "TRACKIOD_SYNC_DATASET": REPO, "TRACKIOD_SYNC_INTERVAL_S": "3600"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    daemon = daemons({**env, **values}, tmp_path / "daemon.log").start()
    sync = tmp_path / "marks"
    sync.mkdir()
    procs = [spawn_script(RANK, {**daemon.env, "R": str(r), "SYNC": str(sync)}) for r in (0, 1)]
    # A pass in the middle of the job, so the rank series arrive in two ticks (their own watermarks).
    wait_for(lambda: all((sync / f"phase0-rank{r}").exists() for r in (0, 1)), timeout=60, what="phase 0")
    wait_for(lambda: min(_points_of(daemon.home, r) for r in (0, 1)) >= 300, timeout=30, what="phase 0 stored")
    _sync_now()
    (sync / "go0").touch()
    wait_for(lambda: all((sync / f"phase1-rank{r}").exists() for r in (0, 1)), timeout=60, what="phase 1")
    (sync / "go1").touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    wait_for(lambda: _state(daemon.home) == "finished", timeout=30, what="the run to finish")
    _sync_now()
    root = hub.repo_dir(REPO)
    assert (root / "rank_points" / "project=dist" / "run_id=job").is_dir()
    assert (root / "run_ranks" / "project=dist" / "run_id=job" / "ranks.parquet").is_file()
    assert (root / "context_points" / "project=dist" / "run_id=job").is_dir()
    daemon.terminate()
    exported = tmp_path / "exported"
    assert cli(["export", "--project", "dist", "--format", "parquet", str(exported)]) == 0
    # The synced dataset (two ticks) and the export (one file per kind) each restore the run exactly.
    for source_of_pull, pulled in ((REPO, tmp_path / "pulled"), (str(exported), tmp_path / "pulled-export")):
        assert cli(["pull", source_of_pull, "--home", str(pulled)]) == 0
        _assert_same_run(daemon.home, pulled)


def _assert_same_run(home: Path, other: Path) -> None:
    source, target = open_reader(home / "trackiod.db"), open_reader(other / "trackiod.db")
    try:
        a, b = get_run(source, "dist", "job"), get_run(target, "dist", "job")
        assert a is not None and b is not None
        for column in ("state", "config", "summary", "job_key", "world_size", "last_step", "created_at", "ended_at"):
            assert a[column] == b[column], column
        ranks_a, ranks_b = run_ranks(source, a["id"]), run_ranks(target, b["id"])
        assert [r["rank"] for r in ranks_a] == [0, 1]
        assert ranks_a == ranks_b
        for key in ("loss", "tok"):
            sa, sb = read_rank_series(source, a["id"], key), read_rank_series(target, b["id"], key)
            assert sorted(sa) == sorted(sb) == [0, 1]
            for rank in sa:
                for x, y in zip(sa[rank], sb[rank]):
                    np.testing.assert_array_equal(x, y)
            agg_a, agg_b = rank_aggregates(source, a["id"], key), rank_aggregates(target, b["id"], key)
            for column in ("steps", "mean", "min", "max", "std", "count"):
                np.testing.assert_array_equal(agg_a[column], agg_b[column])
        assert rank_aggregates(source, a["id"], "loss")["count"][5] == 1  # rank 1's NaN is left out, on both sides
        # History per rank (numbers and texts), and rank 0's plain history, compare exactly (JSON spells NaN).
        assert json.dumps(list(rank_history(source, a))) == json.dumps(list(rank_history(target, b)))
        assert json.dumps(list(history_rows(source, a))) == json.dumps(list(history_rows(target, b)))
        # Every series stored, by (key, context, rank): rank 0's, the other ranks', the context series of each.
        series_a, series_b = _every_series(source, a["id"]), _every_series(target, b["id"])
        assert all(json.dumps([k, '{"subset":"val"}', r]) in series_a for k in ("acc", "why") for r in (0, 1))
        assert series_a.keys() == series_b.keys()
        assert json.dumps(series_a, sort_keys=True) == json.dumps(series_b, sort_keys=True)
    finally:
        source.close()
        target.close()


def _points_of(home: Path, rank: int) -> int:
    db = home / "trackiod.db"
    if not db.exists():
        return 0
    conn = open_reader(db)
    try:
        run = get_run(conn, "dist", "job")
        if run is None:
            return 0
        return sum(s[0].size for r, s in read_rank_series(conn, run["id"], "tok").items() if r == rank)
    finally:
        conn.close()


def _state(home: Path) -> str | None:
    conn = open_reader(home / "trackiod.db")
    try:
        run = get_run(conn, "dist", "job")
        return None if run is None else str(run["state"])
    finally:
        conn.close()


def _every_series(conn: apsw.Connection, run_id: int) -> dict[Any, Any]:
    """``{(key, context body or None, rank): values}`` of every numeric and text series stored for a run."""

    def name_of(key_id: int) -> tuple[str, str | None, int]:
        rank = 0
        if key_id >= RANK_KEY_OFFSET:
            key_id, rank = conn.execute(
                "SELECT key_id, rank FROM rank_keys WHERE id=?", (key_id - RANK_KEY_OFFSET,)
            ).fetchone()
        if key_id < 0:
            name, body = conn.execute(
                "SELECT kc.base_name, c.body FROM key_contexts kc JOIN contexts c ON c.id = kc.context_id "
                "WHERE kc.id=?",
                (-key_id,),
            ).fetchone()
            return str(name), str(body), int(rank)
        return str(conn.execute("SELECT name FROM keys WHERE id=?", (key_id,)).fetchone()[0]), None, int(rank)

    out: dict[Any, Any] = {}
    for key_id, steps, times, vals in conn.execute(
        "SELECT key_id, steps, times, vals FROM chunks WHERE run_id=? ORDER BY id", (run_id,)
    ).fetchall():
        values = out.setdefault(name_of(key_id), [])
        values += zip(decode_steps(steps).tolist(), decode_floats(times).tolist(), decode_floats(vals).tolist())
    for key_id, step, ts, value in conn.execute(
        "SELECT key_id, step, ts, value FROM texts WHERE run_id=? ORDER BY rev", (run_id,)
    ).fetchall():
        out.setdefault(name_of(key_id), []).append((step, ts, value))
    return {json.dumps(k): v for k, v in out.items()}
