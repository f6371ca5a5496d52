"""Hub sync of media, run energy, node series and artifacts: what is committed, watermarks, retries, pull.

Two things are FAKED here, because the real ones cannot run on the test machines, and nothing else:
- the Hugging Face Hub: daemons and the CLI run with ``TRACKIOD_HUB=folder:<tmp>``, i.e.
  trackiod.testing.folder_hub.FolderHub, which applies the real huggingface_hub ``CommitOperationAdd`` /
  ``CommitOperationDelete`` objects to a folder and fails on demand (``transient``, ``in_doubt``);
- NVML: the daemon runs with ``TRACKIOD_NVML=fake:<script.json>`` (trackiod/testing/fake_nvml.py), one scripted GPU
  that the training process declares through ``CUDA_VISIBLE_DEVICES=0``.
The daemon, its sampler and writer, the shim, SQLite, Parquet and the files on disk are real.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script
from trackio_shim.errors import HubTransientError
from trackio_shim.settings import TrackiodSettings
from trackiod.cli import main as cli
from trackiod.read.artifacts import list_artifacts, materialise, resolve
from trackiod.read.connection import open_reader
from trackiod.read.energy import run_energy, system_keys, system_series
from trackiod.read.media import media_keys, read_media
from trackiod.read.runs import list_runs
from trackiod.sync.engine import SyncEngine
from trackiod.sync.layout_kinds import ENERGY_SCHEMA, MEDIA_SCHEMA, SYSTEM_SCHEMA, VERSIONS_SCHEMA
from trackiod.sync.pull_kinds import read_kind
from trackiod.testing.folder_hub import FolderHub

REPO = "me/kinds"
FAST = {"TRACKIOD_SAMPLE_INTERVAL_S": "0.2", "TRACKIOD_MAINTENANCE_INTERVAL_S": "0.2"}

TRAIN = """
import sys, time, pathlib
import numpy as np
import trackio_shim as wandb
run = wandb.init(project="kinds", id=sys.argv[1], resume="allow")
start = run.step
for i in range(start, start + 40):
    row = {"loss": 1 / (i + 1)}
    if i % 10 == 0:
        row["img"] = wandb.Image(np.full((4, 4, 3), i % 255, np.uint8), caption=f"at {i}")
        row["hist"] = wandb.Histogram(np.arange(i + 5) % 7)
        row["page"] = wandb.Html(f"<b>{i}</b>")
    wandb.log(row)
    time.sleep(0.05)  # paces the run
table = wandb.Table(columns=["id", "picture"])
table.add_data(1, wandb.Image(np.full((2, 2), 9, np.uint8)))
wandb.log({"preds": table, "arr": wandb.Array(np.arange(6, dtype=np.int16).reshape(2, 3))}, step=start + 1)
wandb.log({"img": wandb.Image(np.zeros((3, 3), np.uint8))}, step=start)  # replaces the image at that step
data = pathlib.Path(sys.argv[2])
art = wandb.Artifact("weights", type="model", metadata={"by": sys.argv[1]})
art.add_dir(data)
run.log_artifact(art, aliases=["best"] if sys.argv[1] == "r1" else None).wait()
time.sleep(1.0)  # a few node samples while the run is alive
wandb.finish()
"""


@pytest.fixture
def hub(tmp_path: Path) -> FolderHub:
    return FolderHub(tmp_path / "hub")


@pytest.fixture
def kinds_env(env: dict[str, str], hub: FolderHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    script = tmp_path / "nvml.json"
    gpu = {"uuid": "GPU-aaaa-1", "name": "Fake H100", "utilization": 90, "idle_w": 60, "max_w": 700}
    script.write_text(json.dumps({"gpus": [gpu]}))
    values = {
        **FAST,
        "TRACKIOD_HUB": f"folder:{hub.root}",
        "TRACKIOD_SYNC_DATASET": REPO,
        "TRACKIOD_SYNC_INTERVAL_S": "3600",
        "TRACKIOD_SYNC_RETRY_MAX_S": "0.3",
        "TRACKIOD_NVML": f"fake:{script}",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {**env, **values}


def train(env: dict[str, str], data: Path, run_id: str = "r1") -> None:
    run_script(f"import sys; sys.argv = ['x', {run_id!r}, {str(data)!r}]\n" + TRAIN, env)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows_by(table: Any, *columns: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The rows of ``table`` keyed by ``columns``, the one with the highest ``seq`` winning (if any)."""
    rows = table.sort_by("seq").to_pylist() if "seq" in table.column_names else table.to_pylist()
    return {tuple(r[c] for c in columns): r for r in rows}


def assert_kinds_equal_database(root: Path, home: Path) -> None:
    """Media (rows and file bytes), energy, node series inside each run's lifetime and artifacts, as stored."""
    conn = open_reader(home / "trackiod.db")
    try:
        runs = list_runs(conn)
        media = read_kind(root, "media", MEDIA_SCHEMA)
        seqs = media["seq"].to_pylist()
        assert len(seqs) == len(set(seqs))  # no row twice, retries included
        synced = rows_by(media, "project", "run_id", "key", "step")
        expected = 0
        for run in runs:
            for key, (key_id, _, _) in media_keys(conn, run["id"]).items():
                for row in conn.execute(
                    "SELECT step, ts, kind, meta, body, path FROM media WHERE run_id=? AND key_id=?",
                    (run["id"], key_id),
                ):
                    expected += 1
                    got = synced[(run["project"], run["run_key"], key, row[0])]
                    assert (got["step"], got["timestamp"], got["kind"], got["meta"], got["body"], got["path"]) == row
                    for path in [row[5], *json.loads(row[3]).get("files", [])]:
                        if path:
                            assert (root / "media_files" / path).read_bytes() == (home / "media" / path).read_bytes()
        assert len(synced) == expected > 0

        energy = rows_by(read_kind(root, "energy", ENERGY_SCHEMA), "project", "run_id", "gpu_uuid")
        reports = [run_energy(conn, run) for run in runs]
        assert sum(len(r["gpus"]) for r in reports) == len(energy) > 0
        for report in reports:
            for gpu in report["gpus"]:
                got = energy[(report["project"], report["id"], gpu["uuid"])]
                assert (got["joules"], got["gpu_seconds"] / 3600, got["host"]) == (
                    gpu["joules"],
                    gpu["gpu_hours"],
                    gpu["host"],
                )
                assert got["grid_g_per_kwh"] == report["grid_g_per_kwh"]

        system = read_kind(root, "system", SYSTEM_SCHEMA).to_pylist()
        assert len({(r["host"], r["key"], r["timestamp"]) for r in system}) == len(system) > 0
        by_series: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in system:
            by_series.setdefault((r["host"], r["key"]), []).append((r["timestamp"], r["value"]))
        for run in runs:
            for key in system_keys(conn, run["host"]).get(run["host"], []):
                times, vals = system_series(conn, run["host"], key, run["created_at"], run["ended_at"])
                mine = sorted(
                    p for p in by_series.get((run["host"], key), []) if run["created_at"] <= p[0] <= run["ended_at"]
                )
                assert mine == list(zip(times.tolist(), vals.tolist())), key
        assert any(k.startswith("gpu.0.") for _, k in by_series)

        versions = rows_by(read_kind(root, "artifacts/versions", VERSIONS_SCHEMA), "project", "name", "version")
        stored = list_artifacts(conn)
        assert sorted(versions) == sorted((v["project"], v["name"], v["version"]) for v in stored)
        for v in stored:
            full = resolve(conn, v["project"], v["name"], f"v{v['version']}")
            got = versions[(v["project"], v["name"], v["version"])]
            assert (got["digest"], got["producer_run_id"], json.loads(got["metadata"])) == (
                full["digest"],
                full["producer"],
                full["metadata"],
            )
            assert got["entries"] == full["entries"]
            for entry in full["entries"]:
                assert sha256(root / "blobs" / entry["sha256"][:2] / entry["sha256"]) == entry["sha256"]
        aliases = {
            (a["name"], a["alias"]): a["version"] for a in pq.read_table(root / "artifacts" / "aliases").to_pylist()
        }
        assert aliases == {(v["name"], a): v["version"] for v in stored for a in v["aliases"]}
    finally:
        conn.close()


def blob_uploads(hub: FolderHub) -> list[str]:
    return [p for c in hub.commits(REPO) for p in c["paths"] if p.startswith("blobs/")]


def test_media_energy_node_series_and_artifacts_sync_then_pull_exactly(
    stopped_daemon: DaemonProcess, kinds_env: dict[str, str], hub: FolderHub, tmp_path: Path, capsys: Any
) -> None:
    data = tmp_path / "weights"
    data.mkdir()
    (data / "a.bin").write_bytes(b"\x00" * 1000)
    (data / "same-as-a.bin").write_bytes(b"\x00" * 1000)  # identical content: one blob, uploaded once
    stopped_daemon.env = kinds_env
    stopped_daemon.start()
    train(kinds_env, data)
    wait_for(lambda: hub.commits(REPO), timeout=30, what="the finish-triggered commit")
    first = hub.commits(REPO)[0]["paths"]
    assert any(p.startswith("media/project=kinds/run_id=r1/") for p in first) and any(
        p.startswith("media_files/") for p in first
    )
    assert any(p.startswith("artifacts/versions/project=kinds/name=weights/v0") for p in first)
    assert any(p.startswith("energy/project=kinds/run_id=r1/") for p in first)
    # A second version shares a.bin's content with the first: its blob is not uploaded again.
    (data / "b.bin").write_bytes(b"new content")
    train(kinds_env, data, run_id="r2")
    wait_for(lambda: len(hub.commits(REPO)) >= 2, timeout=30, what="the second run's commit")
    assert stopped_daemon.terminate() == 0  # writes the node series still buffered (every 30 s otherwise)

    assert cli(["sync", "--now"]) == 0  # no daemon: the CLI commits what the daemon wrote at shutdown
    assert "committed" in capsys.readouterr().out
    assert cli(["sync", "--now"]) == 0
    assert "already up to date" in capsys.readouterr().out  # no empty commit
    commits = hub.commits(REPO)
    assert any(p.startswith("system/") for p in commits[-1]["paths"])
    uploads = blob_uploads(hub)
    assert len(uploads) == len(set(uploads)) == 2  # zeros + "new content"
    root = hub.repo_dir(REPO)
    assert json.loads((root / "trackiod.json").read_text())["layout_version"] == 3
    assert_kinds_equal_database(root, stopped_daemon.home)

    # Pull restores all of it into another data directory, exactly.
    other = tmp_path / "pulled"
    assert cli(["pull", REPO, "--home", str(other)]) == 0
    assert_pulled_equals(stopped_daemon.home, other)
    # Pulling again with --force replaces the run and adds no node series value twice.
    assert cli(["pull", REPO, "--home", str(other), "--force"]) == 0
    assert_pulled_equals(stopped_daemon.home, other)


def assert_pulled_equals(source_home: Path, target_home: Path) -> None:
    a, b = open_reader(source_home / "trackiod.db"), open_reader(target_home / "trackiod.db")
    try:
        by_key = lambda runs: sorted(runs, key=lambda r: r["run_key"])  # noqa: E731
        runs_a, runs_b = by_key(list_runs(a)), by_key(list_runs(b))
        assert [r["run_key"] for r in runs_a] == [r["run_key"] for r in runs_b]
        for run_a, run_b in zip(runs_a, runs_b):
            assert media_keys(a, run_a["id"]).keys() == media_keys(b, run_b["id"]).keys()
            for key, (key_a, _, _) in media_keys(a, run_a["id"]).items():
                key_b = media_keys(b, run_b["id"])[key][0]
                sa, ta, va = read_media(a, run_a["id"], key_a)
                sb, tb, vb = read_media(b, run_b["id"], key_b)
                assert sa.tolist() == sb.tolist() and ta.tolist() == tb.tolist() and va == vb
                for value in va:
                    if "path" in value:
                        assert (target_home / "media" / value["path"]).read_bytes() == (
                            source_home / "media" / value["path"]
                        ).read_bytes()
            ea, eb = run_energy(a, run_a), run_energy(b, run_b)
            assert ea["gpus"] and {k: v for k, v in ea.items() if k != "duration_s"} == {
                k: v for k, v in eb.items() if k != "duration_s"
            }
            host = run_a["host"]
            for key in system_keys(a, host)[host]:
                window = (run_a["created_at"], run_a["ended_at"])
                xa, ya = system_series(a, host, key, *window)
                xb, yb = system_series(b, host, key, *window)
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)
        cells = [f for (meta,) in b.execute("SELECT meta FROM media") for f in json.loads(meta).get("files", [])]
        assert cells  # the table's image cell
        for path in cells:
            assert (target_home / "media" / path).read_bytes() == (source_home / "media" / path).read_bytes()
        arts_a, arts_b = list_artifacts(a), list_artifacts(b)
        strip = lambda rows: [{k: v for k, v in r.items() if k != "version_id"} for r in rows]  # noqa: E731
        assert strip(arts_a) == strip(arts_b) and arts_a
        settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(target_home)})
        for v in arts_b:
            version = resolve(b, v["project"], v["name"], f"v{v['version']}")
            out = materialise(version, settings.blobs_dir, target_home / "check" / f"v{v['version']}")
            for entry in version["entries"]:
                assert sha256(out / entry["name"]) == entry["sha256"]
    finally:
        a.close()
        b.close()


def test_watermarks_of_the_new_kinds_hold_across_failures_and_restarts(
    stopped_daemon: DaemonProcess, kinds_env: dict[str, str], hub: FolderHub, tmp_path: Path
) -> None:
    data = tmp_path / "weights"
    data.mkdir()
    (data / "a.bin").write_bytes(b"first")
    stopped_daemon.env = {**kinds_env, "TRACKIOD_SYNC_DATASET": ""}  # the daemon syncs nothing by itself
    stopped_daemon.start()
    train(kinds_env, data)
    assert stopped_daemon.terminate() == 0
    settings = TrackiodSettings.load(environ=kinds_env)
    state = settings.sync_dir / "me--kinds.json"

    # The commit lands but its answer is lost: nothing advances.
    hub.inject("in_doubt")
    with pytest.raises(HubTransientError):
        SyncEngine(settings, hub).sync_repo(REPO)
    assert not state.exists()
    # A fresh engine (as after a restart) retries from the same watermark, rewriting the same paths.
    outcome = SyncEngine(settings, hub).sync_repo(REPO)
    assert outcome.committed and outcome.media > 0 and outcome.system_points > 0 and outcome.blobs == 1
    first, retry = hub.commits(REPO)
    assert set(first["paths"]) == set(retry["paths"])
    assert json.loads(state.read_text())["tick"] == 1
    assert not SyncEngine(settings, hub).sync_repo(REPO).committed

    # The run resumes with more media and a second artifact version sharing a blob; two failed attempts.
    (data / "b.bin").write_bytes(b"second")
    stopped_daemon.start()
    train(kinds_env, data, run_id="r2")
    assert stopped_daemon.terminate() == 0
    hub.inject("transient", "in_doubt")
    for _ in range(2):
        with pytest.raises(HubTransientError):
            SyncEngine(settings, hub).sync_repo(REPO)
    assert json.loads(state.read_text())["tick"] == 1
    outcome = SyncEngine(settings, hub).sync_repo(REPO)
    assert outcome.committed and outcome.artifact_versions == 1 and outcome.blobs == 1  # "first" is not re-sent
    assert json.loads(state.read_text())["tick"] == 2
    assert sorted(set(blob_uploads(hub))) == sorted(
        f"blobs/{h[:2]}/{h}" for h in (hashlib.sha256(b"first").hexdigest(), hashlib.sha256(b"second").hexdigest())
    )
    assert_kinds_equal_database(hub.repo_dir(REPO), stopped_daemon.home)


def test_export_parquet_carries_the_new_kinds_and_pulls_back(
    stopped_daemon: DaemonProcess, kinds_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "weights"
    data.mkdir()
    (data / "a.bin").write_bytes(b"exported")
    stopped_daemon.env = {**kinds_env, "TRACKIOD_SYNC_DATASET": ""}
    stopped_daemon.start()
    train(kinds_env, data)
    assert stopped_daemon.terminate() == 0
    out = tmp_path / "export"
    assert cli(["export", "--project", "kinds", "--format", "parquet", str(out)]) == 0
    assert_kinds_equal_database(out, stopped_daemon.home)
    assert cli(["pull", str(out), "--home", str(tmp_path / "back")]) == 0
    assert_pulled_equals(stopped_daemon.home, tmp_path / "back")
