"""The values people log beyond images and tables (issue 14): lists of media, pyplot, wandb.plot charts, video,
audio, 3-D objects and plotly figures, logged by a real shim, stored by a real daemon, read back through Api().
"""

from __future__ import annotations

import io
import json
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.support.daemons import wait_for
from trackio_shim import protocol as P
from trackio_shim.session.client import current_client


def _stored(shim: Any, run: Any, key: str) -> list[Any]:
    return shim.Api().run(f"{run.project}/{run.id}").media(key)


def _stored_each(shim: Any, run: Any, *keys: str) -> list[Any]:
    """The first stored value of each key, waiting for them: encoding a video can outlast finish()'s bounded wait
    for acknowledgements on a busy machine (what is left is then committed shortly after)."""
    wait_for(lambda: all(_stored(shim, run, k) for k in keys), what=f"values of {keys} to be stored")
    return [_stored(shim, run, k)[0] for k in keys]


def _warnings_of(run: Any, caught: Any) -> str:
    """The warnings caught, once the daemon has committed what was sent and its notices have arrived."""
    client = current_client()
    wait_for(lambda: client.stats()["acked"] >= client.seq, what="the frames sent to be committed")
    run.summary.get("x")  # a round trip after the commit, so the notices have arrived
    return "\n".join(str(w.message) for w in caught)


# -------------------------------------------------------------------------------------------------- galleries


def test_a_list_of_images_is_stored_element_by_element_as_a_gallery(shim, daemon):
    rng = np.random.default_rng(1)
    first = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    second = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    pil = PILImage.new("RGB", (7, 2), (1, 2, 3))
    run = shim.init(project="gallery")
    run.log({"samples": [shim.Image(first, caption="first"), shim.Image(second)]})
    run.log({"samples": (shim.Image(pil), shim.Image(first))})
    run.finish()
    stored = _stored(shim, run, "samples")
    assert [(r.kind, r.step, r["count"]) for r in stored] == [("gallery", 0, 2), ("gallery", 1, 2)]
    items = stored[0].elements
    assert [i.kind for i in items] == ["image", "image"] and items[0]["caption"] == "first"
    assert all(i.local_path is not None and i.local_path.is_file() for r in stored for i in r.elements)
    loaded = stored[0].load()
    assert np.array_equal(np.asarray(loaded[0]), first) and np.array_equal(np.asarray(loaded[1]), second)
    assert (stored[1].elements[0]["width"], stored[1].elements[0]["height"]) == (7, 2)
    # The history shows the gallery as one value of its key, like any rich value.
    history = list(shim.Api().run(f"{run.project}/{run.id}").scan_history(keys=["samples"]))
    assert [row["samples"]["_type"] for row in history] == ["gallery", "gallery"]


def test_a_list_mixing_media_and_other_values_is_refused_by_key(shim, daemon):
    run = shim.init(project="gallery")
    with pytest.warns(UserWarning) as caught:
        run.log({"mixed": [shim.Image(np.zeros((2, 2))), 3], "hists": [shim.Histogram([1, 2])], "ok": 1.0})
        text = _warnings_of(run, caught)
    assert "key 'mixed': a logged list may hold only images, videos, audio or 3-D objects" in text
    assert "key 'hists'" in text
    run.finish()
    assert _stored(shim, run, "mixed") == [] and shim.Api().run(f"{run.project}/{run.id}").summary["ok"] == 1.0


# -------------------------------------------------------------------------------------------------- pyplot


def test_pyplot_module_and_figures_are_stored_as_images_of_the_current_figure(shim, daemon):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(2, 1.5), dpi=40)
    plt.plot([0, 1, 2], [2, 0, 1])
    run = shim.init(project="pyplot")
    run.log({"module": plt, "wrapped": shim.Image(plt, caption="current"), "figure": figure})
    run.log({"in_list": [plt, figure]})
    run.finish()
    plt.close(figure)
    for key in ("module", "wrapped", "figure"):
        (ref,) = _stored(shim, run, key)
        assert ref.kind == "image" and (ref["width"], ref["height"]) == (80, 60)
    assert _stored(shim, run, "wrapped")[0]["caption"] == "current"
    (gallery,) = _stored(shim, run, "in_list")
    assert [i.kind for i in gallery.elements] == ["image", "image"]


def test_an_image_of_pyplot_shows_the_figure_as_it_was_when_the_image_was_made(shim, daemon):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(1, 1), dpi=20)
    plt.gca().set_facecolor("red")
    plt.gcf().set_facecolor("red")
    image = shim.Image(plt)
    plt.close("all")  # as scripts do before logging: wandb drew the figure when the Image was made
    run = shim.init(project="pyplot")
    run.log({"red": image})
    run.finish()
    pixels = np.asarray(_stored(shim, run, "red")[0].load())
    assert pixels.shape == (20, 20, 4) and (pixels[0, 0, :3] == [255, 0, 0]).all()


# -------------------------------------------------------------------------------------------------- wandb.plot


def test_every_wandb_plot_chart_is_stored_as_its_table_and_spec(shim, daemon):
    table = shim.Table(
        columns=["x", "y", "group"], data=[[i, i * i, "even" if i % 2 == 0 else "odd"] for i in range(6)]
    )
    y_true = np.array([0, 1, 2, 1, 0, 2, 1, 0])
    probas = np.random.default_rng(2).dirichlet(np.ones(3), size=y_true.size)
    charts = {
        "line": shim.plot.line(table, "x", "y", stroke="group", title="squares"),
        "scatter": shim.plot.scatter(table, "x", "y"),
        "bar": shim.plot.bar(table, "group", "y"),
        "hist": shim.plot.histogram(table, "y"),
        "series": shim.plot.line_series([0, 1, 2], [[1, 2, 3], [3, 2, 1]], keys=["up", "down"], xname="epoch"),
        "confusion": shim.plot.confusion_matrix(y_true=y_true, preds=np.argmax(probas, 1), class_names=["a", "b", "c"]),
        "pr": shim.plot.pr_curve(y_true, probas, labels=["a", "b", "c"], interp_size=11),
        "roc": shim.plot.roc_curve(y_true, probas),
        "custom": shim.plot_table("me/my-chart/v1", table, {"x": "x"}, {"title": "mine"}),
    }
    run = shim.init(project="charts")
    run.log(charts)
    run.finish()
    expected = {
        "line": ("line", "wandb/line/v0", {"x": "x", "y": "y", "stroke": "group"}),
        "scatter": ("scatter", "wandb/scatter/v0", {"x": "x", "y": "y"}),
        "bar": ("bar", "wandb/bar/v0", {"label": "group", "value": "y"}),
        "hist": ("histogram", "wandb/histogram/v0", {"value": "y"}),
        "series": ("line_series", "wandb/lineseries/v0", {"step": "step", "lineKey": "lineKey", "lineVal": "lineVal"}),
        "confusion": ("confusion_matrix", "wandb/confusion_matrix/v1", None),
        "pr": ("curve", "wandb/area-under-curve/v0", {"x": "recall", "y": "precision", "class": "class"}),
        "roc": ("curve", "wandb/area-under-curve/v0", {"x": "fpr", "y": "tpr", "class": "class"}),
        "custom": ("custom", "me/my-chart/v1", {"x": "x"}),
    }
    refs = {key: _stored(shim, run, key)[0] for key in charts}
    for key, (chart, spec, fields) in expected.items():
        ref = refs[key]
        assert (ref.kind, ref["chart"], ref["spec"]) == ("plot", chart, spec), key
        if fields is not None:
            assert ref["fields"] == fields, key
    assert refs["line"]["strings"] == {"title": "squares"}
    assert refs["line"].load().data == table.data
    assert refs["series"].load().data[:3] == [[0, "up", 1], [1, "up", 2], [2, "up", 3]]
    assert refs["series"]["strings"]["xname"] == "epoch"
    confusion = refs["confusion"].load()
    assert confusion.columns == ["Actual", "Predicted", "nPredictions"] and len(confusion.data) == 9
    assert sum(row[2] for row in confusion.data) == y_true.size
    pr = refs["pr"].load()
    assert pr.columns == ["class", "precision", "recall"] and len(pr.data) == 3 * 11
    assert {row[0] for row in pr.data} == {"a", "b", "c"}
    roc = refs["roc"].load()
    assert {row[0] for row in roc.data} == {"0", "1", "2"}
    assert all(0.0 <= row[1] <= 1.0 and 0.0 <= row[2] <= 1.0 for row in roc.data)
    # Each class's curve ends at (1, 1): every positive and every negative found at the lowest threshold.
    last = {row[0]: row for row in roc.data}
    assert all(row[1:] == [1.0, 1.0] for row in last.values())


def test_a_chart_naming_a_column_its_table_lacks_is_refused_by_key(shim, daemon):
    table = shim.Table(columns=["a", "b"], data=[[1, 2]])
    run = shim.init(project="charts")
    with pytest.warns(UserWarning) as caught:
        run.log({"bad": shim.plot.line(table, "a", "nope"), "good": shim.plot.scatter(table, "a", "b")})
        text = _warnings_of(run, caught)
    assert "key 'bad': the chart's y='nope' is not a column of its table ['a', 'b']" in text
    run.finish()
    assert _stored(shim, run, "bad") == [] and _stored(shim, run, "good")[0]["chart"] == "scatter"


def test_pr_curve_matches_a_hand_computed_binary_case():
    import trackio_shim.plot as plot

    # Scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): at recall 0.5 the best precision is 1, at 1.0 it is 2/3.
    chart = plot.pr_curve([1, 0, 1, 0], [[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.9, 0.1]], interp_size=3)
    positive = [row for row in chart.table.data if row[0] == "1"]
    assert positive == [["1", 1.0, 0.0], ["1", 1.0, 0.5], ["1", 0.667, 1.0]]


# -------------------------------------------------------------------------------------------------- video/audio


def _frames(time_steps: int = 5) -> np.ndarray:
    frames = np.zeros((time_steps, 3, 16, 20), np.uint8)
    for t in range(time_steps):
        frames[t, t % 3] = 40 * (t + 1)
    return frames


def test_videos_from_arrays_are_encoded_by_the_daemon_and_files_kept_as_given(shim, daemon, tmp_path):
    run = shim.init(project="video")
    run.log(
        {
            "gif": shim.Video(_frames(), fps=5, caption="default gif"),
            "webm": shim.Video(_frames(), fps=8, format="webm"),
            "batch": shim.Video(np.stack([_frames(), _frames(), _frames()]).astype(np.float32) / 255, format="gif"),
        }
    )
    run.finish()
    gif, webm, batch = _stored_each(shim, run, "gif", "webm", "batch")
    assert (gif["format"], gif["fps"], gif["frames"], gif["width"], gif["height"]) == ("gif", 5, 5, 20, 16)
    assert gif["caption"] == "default gif" and gif.load()[:6] == b"GIF89a"
    assert PILImage.open(gif.local_path).n_frames == 5
    assert webm["format"] == "webm" and webm.load()[:4] == b"\x1a\x45\xdf\xa3"
    assert (batch["width"], batch["height"]) == (40, 32)  # three clips tiled on a 2 x 2 grid
    # A file is stored as it is: log the daemon's webm back as a file.
    copy = tmp_path / "clip.webm"
    copy.write_bytes(webm.load())
    run2 = shim.init(project="video")
    run2.log({"file": shim.Video(str(copy), fps=8)})
    run2.finish()
    assert _stored_each(shim, run2, "file")[0].load() == copy.read_bytes()


def test_audio_from_samples_is_written_as_wav_by_the_daemon(shim, daemon, tmp_path):
    rate = 8000
    t = np.arange(rate // 4) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([mono, -mono], axis=1).astype(np.float32)
    run = shim.init(project="audio")
    run.log({"mono": shim.Audio(mono, sample_rate=rate, caption="A4"), "stereo": shim.Audio(stereo, sample_rate=rate)})
    run.finish()
    mono_ref, stereo_ref = _stored(shim, run, "mono")[0], _stored(shim, run, "stereo")[0]
    assert (mono_ref["format"], mono_ref["sample_rate"], mono_ref["channels"]) == ("wav", rate, 1)
    assert mono_ref["caption"] == "A4" and mono_ref["duration"] == pytest.approx(0.25)
    with wave.open(io.BytesIO(mono_ref.load())) as handle:
        assert (handle.getframerate(), handle.getnchannels(), handle.getnframes()) == (rate, 1, rate // 4)
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), "<i2")
    assert np.abs(pcm / 32767 - mono).max() < 1e-3
    assert stereo_ref["channels"] == 2
    # A file is kept as it is.
    path = tmp_path / "a.wav"
    path.write_bytes(mono_ref.load())
    run2 = shim.init(project="audio")
    run2.log({"file": shim.Audio(str(path)), "list": [shim.Audio(str(path)), shim.Audio(mono, sample_rate=rate)]})
    run2.finish()
    assert _stored(shim, run2, "file")[0].load() == path.read_bytes()
    assert [i.kind for i in _stored(shim, run2, "list")[0].elements] == ["audio", "audio"]


def test_bad_video_and_audio_are_refused_by_key_with_what_to_do(shim, daemon, tmp_path):
    not_video = tmp_path / "x.mp4"
    not_video.write_bytes(b"plain text, not a video")
    run = shim.init(project="av")
    with pytest.warns(UserWarning) as caught:
        run.log(
            {
                "shape": shim.Video(np.zeros((4, 16, 16), np.uint8)),
                "rate": shim.Audio(np.zeros(10)),
                "ext": shim.Audio(str(tmp_path / "x.xyz")),
                "lying": shim.Video(str(not_video)),
                "fine": 1.0,
            }
        )
        text = _warnings_of(run, caught)
    assert "key 'shape': a video of shape (4, 16, 16) is not (time, channel, height, width)" in text
    assert "key 'rate': Audio(sample_rate=None): samples need sample_rate" in text
    assert "key 'ext': Audio(" in text and "unknown audio format 'xyz'" in text
    assert "key 'lying': the data is not a mp4 file" in text
    run.finish()


def test_a_daemon_without_pyav_names_the_package_to_install_for_mp4(shim, daemons, env, tmp_path):
    # FAKED environment: PyAV is installed here, so a stand-in package that fails to import hides it from the
    # daemon (only the daemon's PYTHONPATH has it), as on a machine where it is missing.
    hidden = tmp_path / "no-av" / "av"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError(\"No module named 'av'\")\n")
    daemon_env = {**env, "PYTHONPATH": f"{hidden.parent}:{env.get('PYTHONPATH', '')}"}
    daemons(daemon_env, tmp_path / "daemon.log").start()
    run = shim.init(project="av")
    with pytest.warns(UserWarning) as caught:
        run.log({"mp4": shim.Video(_frames(), format="mp4"), "gif": shim.Video(_frames())})
        text = _warnings_of(run, caught)
    assert "key 'mp4': encoding a video to mp4 needs PyAV where the daemon runs: pip install av" in text
    run.finish()
    assert _stored(shim, run, "mp4") == [] and _stored_each(shim, run, "gif")[0]["format"] == "gif"


# -------------------------------------------------------------------------------------------------- 3-D, plotly


def test_object3d_files_and_point_clouds_are_stored_as_files(shim, daemon, tmp_path):
    obj = tmp_path / "cube.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    points = np.random.default_rng(3).random((50, 6))
    run = shim.init(project="3d")
    run.log(
        {
            "mesh": shim.Object3D(str(obj)),
            "cloud": shim.Object3D(points),
            "scene": shim.Object3D.from_point_cloud(points[:, :3], boxes=[]),
        }
    )
    run.finish()
    mesh, cloud, scene = (_stored(shim, run, k)[0] for k in ("mesh", "cloud", "scene"))
    assert mesh["format"] == "obj" and mesh.load() == obj.read_bytes() and mesh.local_path.name.endswith(".obj")
    assert cloud["format"] == "pts.json" and np.allclose(json.loads(cloud.load()), points)
    assert json.loads(scene.load())["type"] == "lidar/beta"


def test_plotly_figures_are_stored_as_their_json(shim, daemon):
    figure = {"data": [{"type": "scatter", "x": [1, 2, 3], "y": np.array([3.0, 1.0, 2.0])}], "layout": {"title": "t"}}
    run = shim.init(project="plotly")
    run.log({"fig": shim.Plotly(figure)})
    run.finish()
    (ref,) = _stored(shim, run, "fig")
    assert ref.kind == "plotly" and ref["traces"] == 1
    assert ref.load()["data"][0]["y"] == [3.0, 1.0, 2.0]


def test_a_real_plotly_figure_is_logged_without_wrapping(shim, daemon):
    go = pytest.importorskip("plotly.graph_objects")
    run = shim.init(project="plotly")
    run.log({"fig": go.Figure(go.Scatter(x=[1, 2], y=[4, 5]))})
    run.finish()
    assert _stored(shim, run, "fig")[0].load()["data"][0]["y"] == [4, 5]


def test_the_daemon_refuses_malformed_new_kinds_by_key(shim, daemon):
    run = shim.init(project="bad")
    client = current_client()
    items: dict[str, Any] = {
        "gallery": {"_type": "gallery", "items": [{"_type": "histogram", "values": [1], "bins": [0.0, 1.0]}]},
        "plot": {
            "_type": "plot",
            "spec": "s",
            "chart": "line",
            "fields": {"x": "q"},
            "table": {"columns": ["a"], "data": []},
        },
        "plotly": {"_type": "plotly", "json": "[1, 2]"},
        "video": {"_type": "video", "format": "mp4", "fps": 0, "data": b""},
        "obj": {"_type": "object3d", "format": "exe", "data": b"MZ"},
    }
    with pytest.warns(UserWarning) as caught:
        client.emit((P.MEDIA, run._handle, 0, time.time(), items))
        text = _warnings_of(run, caught)
    assert "key 'gallery': element 0: a gallery holds image, video, audio, object3d, not 'histogram'" in text
    assert "key 'plot': the chart names columns ['q'] its table does not have" in text
    assert "key 'plotly': a plotly figure must be the JSON of an object with a 'data' list" in text
    assert "key 'video': a video's fps must be an int from 1 to 240" in text
    assert "key 'obj': a 3-D object's format must be one of" in text
    run.finish()
    assert daemon.status()["malformed_frames"] == 0


def test_replacing_a_gallery_deletes_its_old_files(shim, daemon):
    run = shim.init(project="gallery")
    run.log({"g": [shim.Image(np.zeros((2, 2), np.uint8)), shim.Image(np.ones((2, 2), np.uint8))]}, step=0)
    run.finish()
    old = [i.local_path for i in _stored(shim, run, "g")[0].elements]
    resumed = shim.init(project="gallery", id=run.id, resume="must")
    resumed.log({"g": [shim.Image(np.full((2, 2), 9, np.uint8))]}, step=0)
    resumed.finish()
    (ref,) = _stored(shim, run, "g")
    assert ref["count"] == 1 and ref.elements[0].local_path.is_file()
    assert not any(Path(p).exists() for p in old)


def test_table_cells_may_hold_videos_audio_and_3d_objects(shim, daemon):
    table = shim.Table(columns=["id", "clip", "sound", "shape"])
    table.add_data(
        1, shim.Video(_frames(3)), shim.Audio(np.zeros(80), sample_rate=8000), shim.Object3D(np.zeros((4, 3)))
    )
    run = shim.init(project="table-media")
    run.log({"t": table})
    run.finish()
    (row,) = _stored_each(shim, run, "t")[0].load().data
    assert [cell.kind for cell in row[1:]] == ["video", "audio", "object3d"]
    assert (
        row[1].load()[:6] == b"GIF89a" and row[2].load()[:4] == b"RIFF" and json.loads(row[3].load()) == [[0.0] * 3] * 4
    )
