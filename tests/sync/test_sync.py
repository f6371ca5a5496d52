"""Hub sync: what is committed, the watermark across failures and restarts, pauses, and the pull round trip.

The Hugging Face Hub cannot be reached from the test machines, so it is FAKED here, and only here: daemons
run with ``TRACKIOD_HUB=folder:<tmp>``, which selects trackiod.testing.folder_hub.FolderHub. It applies the real
huggingface_hub ``CommitOperationAdd`` / ``CommitOperationDelete`` objects to a local folder and fails on
demand (transient, in-doubt, 401/403). Everything else is real: daemon processes, ZeroMQ, SQLite, Parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.support.daemons import DaemonProcess, Daemons, wait_for
from tests.support.scripts import run_script
from trackio_shim.errors import HubAuthError, HubTransientError, SettingsError
from trackio_shim.settings import TrackiodSettings
from trackiod.cli import main as cli
from trackiod.read.connection import open_reader
from trackiod.read.runs import history_rows, list_runs, run_keys
from trackiod.read.series import read_series, read_texts
from trackiod.sync.hub import classify
from trackiod.testing.folder_hub import FolderHub

REPO = "me/runs"


@pytest.fixture
def hub(tmp_path: Path) -> FolderHub:
    return FolderHub(tmp_path / "hub")


@pytest.fixture
def sync_env(env: dict[str, str], hub: FolderHub, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A daemon environment that syncs every run to REPO on the fake Hub; passes only when asked or at finish."""
    values = {
        "TRACKIOD_HUB": f"folder:{hub.root}",
        "TRACKIOD_SYNC_DATASET": REPO,
        "TRACKIOD_SYNC_INTERVAL_S": "3600",
        "TRACKIOD_SYNC_RETRY_MAX_S": "0.3",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {**env, **values}


@pytest.fixture
def syncing(sync_env: dict[str, str], tmp_path: Path, daemons: Daemons) -> DaemonProcess:
    return daemons(sync_env, tmp_path / "daemon-stdout.log")


TRAIN = """
import math, sys
import trackio_shim as wandb
config = {"lr": 0.01, "opt": {"b": [1, 2]}}
run = wandb.init(project="proj", id=sys.argv[1] if len(sys.argv) > 1 else "r1", config=config, resume="allow")
start = run.step
for i in range(start, start + N):
    wandb.log({"loss": 1 / (i + 1), "acc": i * 0.5})
    if i % 97 == 0:
        wandb.log({"phase": f"p{i}", "weird": float("nan") if i % 2 else math.inf}, commit=False)
wandb.log({"loss": -1.0}, step=start + 3)  # an overwrite: the later value wins
run.summary["best"] = 0.5
wandb.finish()
"""


def train(env: dict[str, str], n: int = 1500, run_id: str = "r1") -> None:
    run_script(f"import sys; sys.argv = ['x', {run_id!r}]\nN = {n}\n" + TRAIN, env)


def repo_dir(hub: FolderHub) -> Path:
    return hub.repo_dir(REPO)


def read_kind(root: Path, kind: str) -> pa.Table:
    files = sorted((root / kind).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def wait_commits(hub: FolderHub, count: int, timeout: float = 20) -> None:
    wait_for(lambda: len(hub.commits(REPO)) >= count, timeout=timeout, what=f"{count} commit(s) to {REPO}")


def assert_dataset_equals_database(root: Path, db: Path) -> None:
    """Every series and text of the database, and each run's row, as the dataset holds them."""
    points, texts, runs = read_kind(root, "points"), read_kind(root, "texts"), read_kind(root, "runs").to_pylist()
    conn = open_reader(db)
    try:
        db_runs = list_runs(conn)
        assert sorted(r["run_id"] for r in runs) == sorted(r["run_key"] for r in db_runs)
        for run in db_runs:
            row = next(r for r in runs if r["run_id"] == run["run_key"])
            assert json.loads(row["config"]) == run["config"]
            assert json.loads(row["summary"]) == run["summary"]
            assert (row["state"], row["name"], row["last_step"]) == (run["state"], run["name"], run["last_step"])
            for key, (key_id, _, _) in run_keys(conn, run["id"]).items():
                mine = points.filter(pc.and_(pc.equal(points["run_id"], run["run_key"]), pc.equal(points["key"], key)))
                logged = conn.execute(
                    "SELECT SUM(n) FROM chunks WHERE run_id=? AND key_id=?", (run["id"], key_id)
                ).fetchone()[0]
                seqs = mine["seq"].to_numpy()
                # Every value written is there exactly once (no duplicates after retries), in log order.
                assert sorted(seqs.tolist()) == list(range(logged or 0))
                mine = mine.sort_by("seq")
                steps, vals = mine["step"].to_numpy(), mine["value"].to_numpy()
                last = {}
                for s, v in zip(steps.tolist(), vals.tolist()):
                    last[s] = v
                db_steps, _, db_vals = read_series(conn, run["id"], key_id)
                assert sorted(last) == db_steps.tolist()
                np.testing.assert_array_equal(np.array([last[s] for s in sorted(last)]), db_vals)
                t_steps, _, t_vals = read_texts(conn, run["id"], key_id)
                mine_t = texts.filter(pc.and_(pc.equal(texts["run_id"], run["run_key"]), pc.equal(texts["key"], key)))
                latest = {r["step"]: r["value"] for r in mine_t.sort_by("seq").to_pylist()}
                assert sorted(latest) == t_steps.tolist()
                assert [latest[s] for s in sorted(latest)] == t_vals
    finally:
        conn.close()


def sync_now(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli(["sync", "--now"])
    return code, capsys.readouterr().out


def test_finished_run_is_committed_and_equals_the_database(
    syncing: DaemonProcess, sync_env: dict[str, str], hub: FolderHub, capsys: pytest.CaptureFixture[str]
) -> None:
    syncing.start()
    train(sync_env)
    wait_commits(hub, 1)  # a finished run syncs within seconds, not at the next 5-minute tick
    root = repo_dir(hub)
    assert json.loads((root / "trackiod.json").read_text())["layout_version"] == 3
    assert_dataset_equals_database(root, syncing.settings().db_path)
    # Nothing changed: no empty commit.
    assert sync_now(capsys)[0] == 0
    assert len(hub.commits(REPO)) == 1
    # The run resumes and logs more: the next commit carries only the new values, in a new part file.
    train(sync_env, n=700)
    wait_commits(hub, 2)
    second = hub.commits(REPO)[1]["paths"]
    assert any(p.startswith("points/project=proj/run_id=r1/") and p.endswith("-00000002.parquet") for p in second)
    assert_dataset_equals_database(root, syncing.settings().db_path)


def test_one_commit_per_tick_for_several_runs_and_routing(
    syncing: DaemonProcess, sync_env: dict[str, str], hub: FolderHub, capsys: pytest.CaptureFixture[str]
) -> None:
    syncing.start(TRACKIOD_SYNC_DATASET="")
    script = """
    import trackio_shim as wandb
    for kwargs in ({"id": "a"}, {"id": "b"}, {"id": "c", "dataset_id": "me/other"}, {"id": "d", "space_id": "me/board"},
                   {"id": "e", "mode": "offline", "dataset_id": "me/other"}, {"id": "f"}):
        run = wandb.init(project="route", reinit="create_new", **kwargs)
        run.log({"x": 1})
        if kwargs["id"] in ("a", "b"):
            continue  # left running: synced only by the next pass
        run.finish()
    """
    run_script(script, {**sync_env, "TRACKIOD_SYNC_DATASET": ""})
    wait_for(lambda: hub.commits("me/other") and hub.commits("me/board-dataset"), what="both repos to be synced")
    assert sync_now(capsys)[0] == 0
    other = hub.repo_dir("me/other")
    assert sorted(p.name for p in (other / "runs" / "project=route").iterdir()) == [
        "run_id=c"
    ]  # offline "e" never syncs
    assert sorted(p.name for p in (hub.repo_dir("me/board-dataset") / "runs" / "project=route").iterdir()) == [
        "run_id=d"
    ]
    assert not hub.commits(REPO)  # runs without a dataset, and no default: not synced
    # One commit per repository per pass, never an empty one.
    assert len(hub.commits("me/other")) == 1
    # The Space named by space_id was deployed once, reading its dataset.
    space = hub.repo_dir("me/board", "space")
    wait_for(lambda: (space / "trackiod_space.json").exists(), what="the Space to be deployed")
    assert json.loads((space / "trackiod_space.json").read_text()) == {"dataset": "me/board-dataset"}


def test_transient_failures_retry_and_never_duplicate(
    syncing: DaemonProcess, sync_env: dict[str, str], hub: FolderHub
) -> None:
    # "in_doubt": the commit lands but the answer is lost, as when a connection drops after the upload.
    hub.inject("transient", "in_doubt", "transient")
    syncing.start()
    train(sync_env)
    state = syncing.home / "sync" / "me--runs.json"
    wait_for(state.exists, timeout=30, what="the watermark after the retries")
    assert json.loads(state.read_text())["tick"] == 1
    commits = hub.commits(REPO)
    assert len(commits) == 2  # the in-doubt attempt and its retry, which rewrote the same files
    assert set(commits[0]["paths"]) <= set(commits[1]["paths"])
    assert_dataset_equals_database(repo_dir(hub), syncing.settings().db_path)
    assert "retrying" not in json.dumps(syncing.status()["sync"])


def test_auth_error_pauses_sync_visibly_until_sync_now(
    syncing: DaemonProcess, sync_env: dict[str, str], hub: FolderHub, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.inject("403")
    syncing.start()
    train(sync_env)
    status = wait_for(
        lambda: (s := syncing.status()) and s["sync"]["repos"].get(REPO, {}).get("state") == "paused" and s,
        what="sync to pause",
    )
    assert "token" in status["sync"]["repos"][REPO]["message"]
    assert cli(["status"]) == 0
    out = capsys.readouterr().out
    assert f"sync {REPO}" in out and "paused" in out and "trackiod sync --now" in out
    # Paused: more data and scheduled passes commit nothing, and the watermark stays where it was.
    train(sync_env, n=50, run_id="r2")
    ticket = syncing.status()["sync"]["requested"]
    wait_for(lambda: syncing.status()["sync"]["completed"] >= ticket, what="the finish-triggered pass")
    assert not hub.commits(REPO)
    assert not (syncing.home / "sync" / "me--runs.json").exists()
    # The user fixed the token: sync --now retries the paused repository and everything arrives.
    code, out = sync_now(capsys)
    assert code == 0, out
    assert "ok" in out
    assert len(hub.commits(REPO)) == 1
    assert_dataset_equals_database(repo_dir(hub), syncing.settings().db_path)


def test_watermark_survives_kill_and_restart(
    syncing: DaemonProcess, sync_env: dict[str, str], hub: FolderHub, capsys: pytest.CaptureFixture[str]
) -> None:
    state = syncing.home / "sync" / "me--runs.json"
    syncing.start()
    train(sync_env)
    wait_for(state.exists, what="the first watermark")
    syncing.kill9()
    # Data logged while no daemon runs (spooled); at restart its commit lands but the answer is lost
    # ("in_doubt"), every retry fails, and the daemon is killed before one succeeds.
    train({**sync_env, "TRACKIOD_FINISH_TIMEOUT_S": "0.2"}, n=300, run_id="r2")
    hub.inject("in_doubt", *["transient"] * 1000)
    syncing.start()
    wait_commits(hub, 2, timeout=30)
    syncing.kill9()
    assert json.loads(state.read_text())["tick"] == 1  # the watermark did not advance
    (hub.root / "faults.json").write_text("[]")
    syncing.start()
    assert sync_now(capsys)[0] == 0  # resumes from the stored watermark
    commits = hub.commits(REPO)
    assert len(commits) == 3
    assert set(commits[1]["paths"]) <= set(commits[2]["paths"])  # the retry rewrote the in-doubt files
    assert json.loads(state.read_text())["tick"] == 2
    assert_dataset_equals_database(repo_dir(hub), syncing.settings().db_path)


def test_pull_round_trip_is_exact(
    syncing: DaemonProcess, sync_env: dict[str, str], hub: FolderHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    syncing.start()
    train(sync_env)
    train(sync_env, n=400, run_id="r2")
    wait_for(lambda: sum(len(c["paths"]) for c in hub.commits(REPO)) >= 6, what="both runs to be synced")
    assert sync_now(capsys)[0] == 0
    other = tmp_path / "pulled"
    assert cli(["pull", REPO, "--home", str(other)]) == 0
    assert "restored 2 run(s)" in capsys.readouterr().out
    source, target = open_reader(syncing.settings().db_path), open_reader(other / "trackiod.db")
    try:
        by_key = lambda runs: sorted(runs, key=lambda r: r["run_key"])  # noqa: E731
        for a, b in zip(by_key(list_runs(source)), by_key(list_runs(target))):
            for column in ("run_key", "name", "state", "config", "summary", "tags", "metric_defs", "last_step"):
                assert a[column] == b[column], column
            assert a["created_at"] == b["created_at"] and a["ended_at"] == b["ended_at"]
            # JSON spells NaN and inf, so histories with them compare exactly.
            assert json.dumps(list(history_rows(source, a))) == json.dumps(list(history_rows(target, b)))
            for key in run_keys(source, a["id"]):
                sa = read_series(source, a["id"], run_keys(source, a["id"])[key][0])
                sb = read_series(target, b["id"], run_keys(target, b["id"])[key][0])
                for x, y in zip(sa, sb):
                    np.testing.assert_array_equal(x, y)
    finally:
        source.close()
        target.close()
    # Pulling again refuses to overwrite, unless --force; a running daemon's home is refused.
    assert cli(["pull", REPO, "--home", str(other)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli(["pull", REPO, "--home", str(other), "--force"]) == 0
    assert cli(["pull", REPO, "--force"]) == 2
    assert "daemon is running" in capsys.readouterr().err


def test_sync_now_without_a_daemon_syncs_from_the_cli(
    stopped_daemon: DaemonProcess, sync_env: dict[str, str], hub: FolderHub, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped_daemon.start(TRACKIOD_SYNC_DATASET="", TRACKIOD_HUB=f"folder:{hub.root}")
    train({**sync_env, "TRACKIOD_SYNC_DATASET": ""})  # nothing to sync yet: no default dataset in the daemon
    stopped_daemon.terminate()
    assert not hub.commits(REPO)
    code, out = sync_now(capsys)
    assert code == 0 and "committed" in out
    assert_dataset_equals_database(repo_dir(hub), stopped_daemon.settings().db_path)
    code, out = sync_now(capsys)
    assert code == 0 and "already up to date" in out
    assert len(hub.commits(REPO)) == 1


def _http_error(status: int) -> Exception:
    httpx = pytest.importorskip("httpx2")
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx.Request("POST", "https://huggingface.co/api/datasets/me/runs/commit/main")
    return HfHubHTTPError(f"{status} error", response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, HubAuthError), (403, HubAuthError), (404, HubAuthError), (429, HubTransientError), (500, HubTransientError)],
)
def test_hub_errors_are_classified_from_real_huggingface_hub_exceptions(status: int, kind: type) -> None:
    error = classify(_http_error(status), "committing to dataset me/runs")
    assert isinstance(error, kind)
    assert "me/runs" in str(error)
    assert isinstance(classify(ConnectionResetError("reset by peer"), "x"), HubTransientError)


def test_hub_setting_is_checked() -> None:
    with pytest.raises(SettingsError, match="TRACKIOD_HUB"):
        TrackiodSettings.load(environ={"TRACKIOD_HUB": "s3://bucket"})
    assert TrackiodSettings.load(environ={}).sync_interval_s == 300.0


def test_migration_from_version_1_numbers_existing_texts(tmp_path: Path) -> None:
    import apsw

    from trackiod.store import schema
    from trackiod.store.writer import Store

    path = tmp_path / "v1.db"
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute(schema.MIGRATIONS[0])
        conn.execute("PRAGMA user_version=1")
        conn.executemany(
            "INSERT INTO texts(run_id, key_id, step, ts, value) VALUES (?, ?, ?, 0, ?)",
            [(1, 1, 5, "c"), (1, 1, 2, "b"), (2, 1, 0, "d"), (1, 0, 9, "a")],
        )
    conn.close()
    store = Store(path)  # migrates
    revs = store.conn.execute("SELECT value, rev FROM texts ORDER BY rev").fetchall()
    assert revs == [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
    with store.conn:
        store.write_texts([(1, 1, 2, 1.0, "b2")])  # a replaced value gets the next revision
    assert store.conn.execute("SELECT rev FROM texts WHERE value='b2'").fetchone() == (5,)
    assert store.conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
    store.close()
