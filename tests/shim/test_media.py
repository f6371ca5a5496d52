"""Images, tables, HTML and arrays: logged by a real shim, stored by a real daemon, read back through Api().

Also bad input: each bad value is reported by key and the rest of its call is kept.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.support.daemons import wait_for
from tests.support.scripts import run_script
from trackio_shim import protocol as P
from trackio_shim.session.client import current_client
from trackiod.ingest.media import slug


def _api_run(shim: Any, run: Any) -> Any:
    return shim.Api().run(f"{run.project}/{run.id}")


def _media_dir(shim: Any) -> Path:
    return Path(shim.Api().settings.media_dir)


# --------------------------------------------------------------------------------------------------- images


def test_images_from_arrays_in_every_layout_round_trip_as_png(shim, daemon):
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    gray = rng.integers(0, 256, (4, 7), dtype=np.uint8)
    rgba = rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)
    unit = np.linspace(0, 1, 12).reshape(3, 4)
    run = shim.init(project="media")
    run.log(
        {
            "hwc": shim.Image(hwc, caption="an image"),
            "chw": shim.Image(chw),
            "gray": shim.Image(gray),
            "rgba": shim.Image(rgba),
            "unit": shim.Image(unit),
        }
    )
    run.finish()
    stored = {key: _api_run(shim, run).media(key)[0] for key in ("hwc", "chw", "gray", "rgba", "unit")}
    assert stored["hwc"]["caption"] == "an image"
    assert (stored["hwc"]["width"], stored["hwc"]["height"], stored["hwc"]["format"]) == (5, 6, "png")
    assert np.array_equal(np.asarray(stored["hwc"].load()), hwc)
    assert np.array_equal(np.asarray(stored["chw"].load()), hwc)
    assert np.array_equal(np.asarray(stored["gray"].load()), gray)
    assert np.array_equal(np.asarray(stored["rgba"].load()), rgba)
    assert np.array_equal(np.asarray(stored["unit"].load()), np.rint(unit * 255).astype(np.uint8))
    for ref in stored.values():
        assert ref.local_path.is_file() and _media_dir(shim) in ref.local_path.parents
        with ref.open() as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_images_from_pil_files_tensors_and_figures(shim, daemon, tmp_path):
    torch = pytest.importorskip("torch")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pil = PILImage.new("RGB", (9, 4), (10, 200, 30))
    png, jpeg = tmp_path / "a.png", tmp_path / "b.jpg"
    pil.save(png)
    pil.save(jpeg, quality=90)
    figure, axes = plt.subplots(figsize=(2, 1), dpi=50)
    axes.plot([0, 1], [1, 0])
    tensor = torch.zeros(3, 4, 5)
    tensor[0] = 1.0  # CHW, red
    run = shim.init(project="media")
    run.log({"pil": shim.Image(pil), "png": shim.Image(str(png)), "jpeg": shim.Image(jpeg), "fig": figure})
    run.log({"tensor": shim.Image(tensor), "palette": shim.Image(pil.convert("P"))})
    run.finish()
    api_run = _api_run(shim, run)
    assert np.array_equal(np.asarray(api_run.media("pil")[0].load()), np.asarray(pil))
    assert api_run.media("png")[0].local_path.read_bytes() == png.read_bytes()  # stored as given
    assert api_run.media("jpeg")[0]["format"] == "jpg"
    assert (api_run.media("fig")[0]["width"], api_run.media("fig")[0]["height"]) == (100, 50)
    red = np.asarray(api_run.media("tensor")[0].load())
    assert red.shape == (4, 5, 3) and (red[..., 0] == 255).all() and (red[..., 1:] == 0).all()
    assert api_run.media("palette")[0].load().size == (9, 4)


def test_heavy_image_work_happens_in_the_daemon_not_the_training_process(daemon, env):
    script = """
    import json, sys
    import numpy as np
    import trackio_shim as wandb

    run = wandb.init(project="light-media", id="lm1")
    run.log({"img": wandb.Image(np.zeros((32, 32, 3), np.uint8)), "t": wandb.Table(columns=["a"], data=[[1]])})
    run.finish()
    print(json.dumps(sorted(m for m in ("PIL", "torch", "trackiod", "pandas", "matplotlib") if m in sys.modules)))
    """
    assert json.loads(run_script(script, env).stdout.strip().splitlines()[-1]) == []
    from trackio_shim import Api

    assert Api().run("light-media/lm1").media("img")[0]["width"] == 32


# --------------------------------------------------------------------------------------------------- tables


def test_table_api_as_in_wandb():
    import trackio_shim as wandb

    table = wandb.Table(columns=["a", "b"], data=[[1, "x"]])
    table.add_data(2, "y")
    table.add_column("c", [0.5, 1.5])
    assert table.get_column("a") == [1, 2]
    assert table.get_column("c", convert_to="numpy").tolist() == [0.5, 1.5]
    frame = table.get_dataframe()
    assert list(frame.columns) == ["a", "b", "c"] and frame["b"].tolist() == ["x", "y"]
    assert wandb.Table(dataframe=frame).data == table.data
    with pytest.raises(ValueError, match="3 columns"):
        table.add_data(1, 2)
    with pytest.raises(ValueError, match="2 rows"):
        table.add_column("d", [1])
    with pytest.raises(ValueError, match="already exists"):
        table.add_column("a", [1, 2])
    with pytest.raises(ValueError, match="no column 'z'"):
        table.get_column("z")


def test_get_dataframe_without_pandas_says_how_to_get_it(monkeypatch):
    import sys

    import trackio_shim as wandb

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(wandb.UsageError, match="pip install pandas"):
        wandb.Table(columns=["a"], data=[[1]]).get_dataframe()


def test_tables_with_image_cells_round_trip(shim, daemon):
    run = shim.init(project="media")
    table = shim.Table(columns=["id", "score", "picture"])
    table.add_data(1, 0.5, shim.Image(np.full((2, 2), 7, np.uint8)))
    table.add_data(2, None, "text")
    run.log({"preds": table})
    run.finish()
    (ref,) = _api_run(shim, run).media("preds")
    assert (ref["columns"], ref["rows"]) == (["id", "score", "picture"], 2)
    loaded = ref.load()
    assert loaded.columns == ["id", "score", "picture"]
    assert loaded.get_column("id") == [1, 2] and loaded.get_column("score") == [0.5, None]
    cell = loaded.data[0][2]
    assert cell.kind == "image" and np.asarray(cell.load()).tolist() == [[7, 7], [7, 7]]


# --------------------------------------------------------------------------------------------------- html, arrays


def test_html_and_arrays_round_trip(shim, daemon, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<p>from a file</p>")
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    run = shim.init(project="media")
    run.log({"html": shim.Html("<b>hi</b>"), "page": shim.Html(str(page)), "arr": shim.Array(data)})
    run.log({"arr": shim.Array(np.eye(2, dtype=">f8"))})  # big-endian input is stored little-endian
    run.finish()
    api_run = _api_run(shim, run)
    assert api_run.media("html")[0].load() == "<b>hi</b>"
    assert api_run.media("page")[0].load() == "<p>from a file</p>"
    first, second = api_run.media("arr")
    assert (first["dtype"], first["shape"]) == ("int16", [2, 3, 4])
    assert np.array_equal(first.load(), data) and first.load().dtype == np.int16
    assert np.array_equal(second.load(), np.eye(2))
    rows = list(api_run.scan_history(keys=["arr"]))
    assert [r["_step"] for r in rows] == [0, 1] and rows[0]["arr"].kind == "array"


# --------------------------------------------------------------------------------------------------- bad input


def test_bad_values_are_reported_by_key_and_the_rest_of_the_call_is_kept(shim, daemon, monkeypatch):
    monkeypatch.setenv("TRACKIOD_MAX_ARRAY_BYTES", "1000")
    run = shim.init(project="media")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log(
            {
                "big": shim.Array(np.zeros(200)),
                "objects": shim.Array(np.array([object()], dtype=object)),
                "shape": shim.Image(np.zeros((5, 5, 7))),
                "rows": shim.Table(columns=["a", "b"], data=[[1, 2], [3]]),
                "missing": shim.Image("/nonexistent/picture.png"),
                "ok_scalar": 1.5,
                "ok_image": shim.Image(np.zeros((2, 2), np.uint8)),
            }
        )
    messages = "\n".join(str(w.message) for w in caught)
    assert "key 'big': an array of 1,600 bytes is over TRACKIOD_MAX_ARRAY_BYTES (1,000 bytes)" in messages
    assert "key 'objects': an array of dtype object is not supported" in messages
    assert "key 'shape': an image of shape (5, 5, 7) is not HxW, HxWxC or CxHxW" in messages
    assert "key 'rows': row 1 has 1 values but the table has 2 columns" in messages
    assert "key 'missing': cannot read image file '/nonexistent/picture.png'" in messages
    run.finish()
    (row,) = list(_api_run(shim, run).scan_history())
    assert row["ok_scalar"] == 1.5 and row["ok_image"].kind == "image"
    assert not {"big", "objects", "shape", "rows", "missing"} & set(row)


def test_the_daemon_refuses_a_malformed_rich_value_by_key_and_keeps_serving(shim, daemon):
    run = shim.init(project="media")
    client = current_client()
    bad_image = {"_type": "image", "format": "raw", "dtype": "uint8", "shape": [2, 2], "layout": "HW", "data": b"x"}
    fake_png = {"_type": "image", "format": "png", "data": b"\x89PNG\r\n\x1a\nnot really"}
    items = {"img": bad_image, "png": fake_png, "what": {"_type": "hologram"}, "h": {"_type": "histogram"}}
    items["good"] = {"_type": "histogram", "values": [1, 2], "bins": [0.0, 1.0, 2.0]}
    with pytest.warns(UserWarning) as caught:
        client.emit((P.MEDIA, run._handle, 0, time.time(), items))
        wait_for(lambda: client.stats()["acked"] >= client.seq, what="the MEDIA frame to be committed")
        run.summary.get("x")  # a round trip, so the notices have arrived
    text = "\n".join(str(w.message) for w in caught)
    assert "key 'img': an array of shape [2, 2] and dtype uint8 needs 4 bytes, got 1" in text
    assert "key 'png': not a readable png image" in text
    assert "key 'what': unknown rich value type 'hologram'" in text
    assert "key 'h': a histogram needs lists 'values' and 'bins'" in text
    run.finish()
    assert _api_run(shim, run).media("good")[0]["values"] == [1, 2]
    assert daemon.status()["malformed_frames"] == 0


# --------------------------------------------------------------------------------------------------- files


def test_media_file_names_cannot_escape_the_media_folder(shim, daemon):
    run = shim.init(project="media")
    hostile = ["../../outside", "/etc/passwd", "..", "a/../../b", "\\..\\x", "ünï/cødé"]
    run.log({name: shim.Html(f"<i>{i}</i>") for i, name in enumerate(hostile)})
    run.finish()
    media_dir = _media_dir(shim).resolve()
    for name in hostile:
        (ref,) = _api_run(shim, run).media(name)
        assert media_dir in ref.local_path.resolve().parents
        assert "/" not in slug(name) and not slug(name).startswith(".")
    files = [p for p in media_dir.rglob("*") if p.is_file()]
    assert len(files) == len(hostile)


def test_a_value_replaced_at_the_same_step_leaves_no_orphan_file(shim, daemon):
    run = shim.init(project="media")
    run.log({"img": shim.Image(np.zeros((2, 2), np.uint8))}, step=3)
    run.log({"img": shim.Image(np.ones((2, 2), np.uint8))}, step=3)
    run.finish()
    (ref,) = _api_run(shim, run).media("img")
    assert np.asarray(ref.load()).tolist() == [[1, 1], [1, 1]]
    files = [p for p in _media_dir(shim).rglob("*") if p.is_file()]
    assert files == [ref.local_path]
