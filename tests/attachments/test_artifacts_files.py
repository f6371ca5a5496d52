"""Artifacts, save() and metric context, end to end: a real daemon, real files, read back from SQLite."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess, wait_for
from trackiod import cli


def blob_files(home: Path) -> list[Path]:
    return [p for p in (home / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp"]


# --------------------------------------------------------------------------------------------------- artifacts


def test_artifact_round_trip_versions_aliases_lineage_and_dedupe(
    daemon: DaemonProcess, shim: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    (data / "sub" / "copy.csv").write_text("a,b\n1,2\n")  # same content as train.csv: one blob
    (data / "labels.txt").write_text("cat\ndog\n")

    producer = shim.init(project="art", id="producer")
    first = shim.Artifact("dataset", type="dataset", description="toy", metadata={"rows": 1})
    first.add_dir(data)
    assert first.files == ["labels.txt", "sub/copy.csv", "train.csv"]
    assert producer.log_artifact(first, aliases=["best"]).wait().version == "v0"
    again = shim.Artifact("dataset", type="dataset")
    again.add_dir(data)
    assert producer.log_artifact(again).wait().version == "v0"  # identical content: no new version
    (data / "labels.txt").write_text("cat\ndog\nbird\n")
    third = producer.log_artifact(str(data), name="dataset", type="dataset").wait()
    assert third.version == "v1" and third.aliases == ["latest"]
    producer.finish()

    assert len(blob_files(daemon.home)) == 3  # train.csv == copy.csv, plus two versions of labels.txt
    consumer = shim.init(project="art", id="consumer")
    best = consumer.use_artifact("dataset:best", type="dataset")
    assert best.version == "v0" and (Path(best) / "labels.txt").read_text() == "cat\ndog\n"
    latest = consumer.use_artifact("art/dataset:latest")
    assert latest.version == "v1" and (Path(latest) / "labels.txt").read_text() == "cat\ndog\nbird\n"
    assert (Path(consumer.use_artifact("dataset:v1")) / "sub" / "copy.csv").read_text() == "a,b\n1,2\n"
    exported = tmp_path / "exported"
    assert best.download(exported) == str(exported) and (exported / "train.csv").read_text() == "a,b\n1,2\n"
    consumer.finish()

    api = shim.Api()
    v0 = api.artifact("art/dataset:v0")
    assert (v0.producer, v0.used_by, sorted(v0.aliases)) == ("producer", ["consumer"], ["best"])
    assert v0.metadata == {"rows": 1} and v0.files == ["labels.txt", "sub/copy.csv", "train.csv"]
    v1 = api.artifact("art/dataset:latest")
    assert (v1.version, v1.producer, v1.used_by) == ("v1", "producer", ["consumer"])
    listing = api.artifacts("art")
    assert [(v["version"], v["aliases"]) for v in listing] == [(1, ["latest"]), (0, ["best"])]


def test_bad_artifact_input_gets_a_clear_error_and_loses_nothing_else(
    daemon: DaemonProcess, shim: Any, tmp_path: Path
) -> None:
    run = shim.init(project="art", id="bad1")
    run.log({"x": 1})
    with pytest.raises(shim.UsageError, match="no such file"):
        shim.Artifact("m", "model").add_file(tmp_path / "missing.bin")
    with pytest.raises(shim.UsageError, match="Artifact name"):
        shim.Artifact("bad name!", "model")
    with pytest.raises(shim.UsageError, match="has no files"):
        run.log_artifact(shim.Artifact("empty", "model"))
    with pytest.raises(shim.ArtifactNotFoundError, match="no artifact 'nothing'"):
        run.use_artifact("nothing:latest")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"\x00" * 100)
    run.log_artifact(weights, name="model", type="model").wait()
    with pytest.raises(shim.ArtifactNotFoundError, match=r"no version or alias 'prod' \(versions: v0; aliases: latest"):
        run.use_artifact("model:prod")
    with pytest.raises(shim.UsageError, match="has type 'model', not 'dataset'"):
        run.use_artifact("model:latest", type="dataset")
    # A source file that vanishes before the daemon copies it: no version, a clear error from wait().
    vanishing = tmp_path / "gone.bin"
    vanishing.write_bytes(b"1")
    doomed = shim.Artifact("model", "model")
    doomed.add_file(vanishing)
    vanishing.unlink()
    with pytest.raises(shim.ArtifactError, match="could not read"):
        run.log_artifact(doomed).wait()
    clash = shim.Artifact("model", "dataset")
    clash.add_file(weights)
    with pytest.raises(shim.ArtifactError, match="has type 'model', not 'dataset'"):
        run.log_artifact(clash).wait()
    run.log({"x": 2})
    run.finish()
    assert [r["x"] for r in shim.Api().run("art/bad1").scan_history()] == [1, 2]
    assert [v["version"] for v in shim.Api().artifacts("art")] == [0]
    assert daemon.alive


def test_cli_lists_and_fetches_artifacts(
    daemon: DaemonProcess, shim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(os.urandom(4096))
    run = shim.init(project="cli", id="c1")
    run.log_artifact(model, type="model", aliases=["prod"]).wait()
    run.finish()
    capsys.readouterr()
    assert cli.main(["artifacts", "ls", "--project", "cli"]) == 0
    out = capsys.readouterr().out
    assert "model.pt" in out and "v0" in out and ("latest, prod" in out or "prod, latest" in out)
    dest = tmp_path / "fetched"
    assert cli.main(["artifacts", "get", "model.pt:prod", "--dest", str(dest)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(dest) and (dest / "model.pt").read_bytes() == model.read_bytes()
    assert "100%" in captured.err  # the progress bar's final line
    assert cli.main(["artifacts", "get", "cli/model.pt:nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no version or alias 'nope'" in err


# --------------------------------------------------------------------------------------------------- save()


def test_save_live_copies_a_file_again_when_it_is_rewritten(
    stopped_daemon: DaemonProcess, shim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped_daemon.start(TRACKIOD_MAINTENANCE_INTERVAL_S="0.2")
    monkeypatch.chdir(tmp_path)
    Path("ckpt").mkdir()
    Path("ckpt/state.txt").write_text("epoch 1")
    run = shim.init(project="files", id="live1")
    assert shim.save("ckpt/*.txt") == [str(tmp_path / "ckpt" / "state.txt")]
    copy = stopped_daemon.home / "files" / "files" / "live1" / "ckpt" / "state.txt"
    wait_for(lambda: copy.exists() and copy.read_text() == "epoch 1", what="the first copy")
    Path("ckpt/state.txt").write_text("epoch 2, longer")
    Path("ckpt/new.txt").write_text("appeared later")
    wait_for(lambda: copy.read_text() == "epoch 2, longer", what="the copy of the rewritten file")
    run.finish()
    files = wait_for(lambda: (lambda f: f if len(f) == 2 else None)(shim.Api().run("files/live1").files()))
    assert {f["name"]: f["copies"] for f in files} == {"ckpt/new.txt": 1, "ckpt/state.txt": 2}
    assert Path(files[1]["path"]).read_text() == "epoch 2, longer"


def test_save_now_and_end_policies_and_a_glob_matching_nothing(
    stopped_daemon: DaemonProcess, shim: Any, tmp_path: Path
) -> None:
    stopped_daemon.start(TRACKIOD_MAINTENANCE_INTERVAL_S="0.2")
    (tmp_path / "config.yaml").write_text("lr: 0.1")
    (tmp_path / "final.txt").write_text("draft")
    run = shim.init(project="files", id="policies1")
    run.log({"x": 1})
    shim.save(str(tmp_path / "config.yaml"), policy="now")
    run.save(str(tmp_path / "final.txt"), policy="end")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run.save(str(tmp_path / "*.nothing"), policy="now") == []
    assert any("no file matches; nothing was saved" in str(w.message) for w in caught)
    with pytest.raises(shim.UsageError, match="policy"):
        run.save("x", policy="sometimes")
    with pytest.raises(shim.UsageError, match="not inside base_path"):
        run.save(str(tmp_path / "config.yaml"), base_path=tmp_path / "elsewhere")
    store = stopped_daemon.home / "files" / "files" / "policies1"
    wait_for(lambda: (store / "config.yaml").exists(), what="the 'now' copy")
    (tmp_path / "final.txt").write_text("final")
    assert not (store / "final.txt").exists()  # 'end' waits for the end of the run
    run.log({"x": 2})
    run.finish()
    wait_for(lambda: (store / "final.txt").exists() and (store / "final.txt").read_text() == "final")
    assert [r["x"] for r in shim.Api().run("files/policies1").scan_history()] == [1, 2]


# --------------------------------------------------------------------------------------------------- context


def test_metric_context_is_stored_as_separate_series_and_queryable(daemon: DaemonProcess, shim: Any) -> None:
    run = shim.init(project="ctx", id="c1")
    for step in range(3):
        run.log({"loss": 1.0 - step / 10}, step=step)
        run.log({"loss": 2.0 - step / 10, "acc": 0.5}, step=step, context={"subset": "val"})
    run.set_context({"subset": "test", "fold": 1})
    run.log({"loss": 3.0}, step=3)
    run.log({"loss": 4.0}, step=3, context={"fold": 2})  # per call, merged over the run's context
    run.set_context(None)
    run.log({"loss": 0.5}, step=4)
    with pytest.raises(shim.UsageError, match="must be a str, int, float or bool"):
        run.set_context({"subset": ["a"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"loss": 0.4}, step=5, context="val")  # type: ignore[arg-type]
    assert any("context must be a dict" in str(w.message) for w in caught)
    run.finish()

    stored = shim.Api().run("ctx/c1")
    assert [(r["_step"], r["loss"]) for r in stored.scan_history()] == [
        (0, 1),
        (1, 0.9),
        (2, 0.8),
        (4, 0.5),
        (5, 0.4),
    ]
    assert stored.summary["loss"] == 0.4  # the summary follows the context-free series
    assert sorted((c["key"], tuple(sorted(c["context"].items())), c["points"]) for c in stored.contexts()) == [
        ("acc", (("subset", "val"),), 3),
        ("loss", (("fold", 1), ("subset", "test")), 1),
        ("loss", (("fold", 2), ("subset", "test")), 1),
        ("loss", (("subset", "val"),), 3),
    ]
    val = list(stored.scan_history(context={"subset": "val"}))
    assert [(r["_step"], r["loss"], r["acc"]) for r in val] == [(0, 2, 0.5), (1, 1.9, 0.5), (2, 1.8, 0.5)]
    assert [r["loss"] for r in stored.history(context={"subset": "val"}, keys=["loss"], pandas=False)] == [
        2,
        1.9,
        1.8,
    ]
    series = stored.series("loss")
    assert series[0]["context"] == {}
    assert len(series) == 4
    test_only = stored.series("loss", context={"subset": "test"})
    assert sorted(s["context"]["fold"] for s in test_only) == [1, 2]
    assert [s["values"] for s in test_only if s["context"]["fold"] == 2] == [[4.0]]
