"""The run page's API for the values issue 14 added: galleries, videos, audio, 3-D objects, plotly figures and
wandb.plot charts, over the store a real daemon wrote from a real training script (tests/support/media_values.py).
The app is driven by Starlette's HTTP test client over that SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dashboard import client, isolated_env, settings_for
from tests.support.media_values import store_media_values_run


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    tmp = tmp_path_factory.mktemp("values")
    run_id = store_media_values_run(isolated_env(tmp / "home"), tmp)
    yield client(settings_for(tmp / "home")), run_id


def _values(c: Any, run_id: str, key: str, **params: Any) -> dict[str, Any]:
    response = c.get("/api/media/values", params={"project": "values", "run": run_id, "key": key, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_media_index_lists_each_new_kind(store: Any) -> None:
    c, run_id = store
    keys = c.get("/api/media", params={"project": "values", "run": run_id}).json()["keys"]
    kinds = {k["key"]: k["kind"] for k in keys if k["key"] != "plotly/real"}  # only where plotly is installed
    assert kinds == {
        "gallery": "gallery",
        "figure": "image",
        "chart/line": "plot",
        "chart/bar": "plot",
        "chart/confusion": "plot",
        "chart/roc": "plot",
        "clip": "video",
        "tone": "audio",
        "cloud": "object3d",
        "plotly": "plotly",
    }


def test_a_gallery_comes_back_per_step_with_each_elements_file(store: Any) -> None:
    c, run_id = store
    body = _values(c, run_id, "gallery")
    assert [v["step"] for v in body["values"]] == [0, 1]
    items = body["values"][1]["items"]
    assert [(i["kind"], i["caption"], i["width"]) for i in items] == [("image", f"tile {n}", 8) for n in range(3)]
    for item in items:
        response = c.get(f"/media/{item['path']}")
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


def test_video_audio_and_3d_files_are_served_with_their_types(store: Any) -> None:
    c, run_id = store
    (clip,) = _values(c, run_id, "clip")["values"]
    assert (clip["format"], clip["fps"], clip["frames"], clip["caption"]) == ("webm", 6, 6, "a moving bar")
    video = c.get(f"/media/{clip['path']}")
    assert video.headers["content-type"] == "video/webm" and video.content.startswith(b"\x1a\x45\xdf\xa3")
    (tone,) = _values(c, run_id, "tone")["values"]
    assert (tone["format"], tone["sample_rate"], tone["channels"]) == ("wav", 8000, 1)
    assert c.get(f"/media/{tone['path']}").headers["content-type"] in ("audio/x-wav", "audio/wav")
    (cloud,) = _values(c, run_id, "cloud")["values"]
    assert cloud["format"] == "pts.json" and len(c.get(f"/media/{cloud['path']}").json()) == 20


def test_a_chart_comes_back_with_its_spec_and_rows(store: Any) -> None:
    c, run_id = store
    line = _values(c, run_id, "chart/line")
    assert (line["chart"], line["spec"], line["fields"]) == (
        "line",
        "wandb/line/v0",
        {"x": "x", "y": "y", "stroke": None},
    )
    assert line["strings"] == {"title": "a parabola"} and line["columns"] == ["x", "y"]
    assert line["rows"][:2] == [[0, 25], [1, 16]] and line["total"] == 11 and line["steps"] == [2]
    confusion = _values(c, run_id, "chart/confusion")
    assert confusion["chart"] == "confusion_matrix" and sum(r[2] for r in confusion["rows"]) == 60
    assert _values(c, run_id, "chart/roc")["chart"] == "curve"
    assert _values(c, run_id, "chart/line", step=7)["error"] == "no chart at step 7"


def test_a_plotly_figure_is_served_as_json(store: Any) -> None:
    c, run_id = store
    (fig,) = _values(c, run_id, "plotly")["values"]
    assert fig["traces"] == 1 and c.get(f"/media/{fig['path']}").json()["data"][0]["y"] == [1, 3, 2]
