"""The dashboard's system panel, run page (energy, media, alerts, artifacts, context) over a real daemon's store.

A real daemon stores what a real training script logs through the shim (images, a table, histograms, HTML, an
array, a context series, an alert, artifacts); its sampler stores the node's series. NVML is FAKED (no GPU
here): the daemon runs with ``TRACKIOD_NVML=fake:<script>`` (trackiod/testing/fake_nvml.py), two scripted GPUs, and
the script declares GPU 0 with CUDA_VISIBLE_DEVICES=0. psutil, the sampler, the writer and the app are real.
The app is driven by Starlette's HTTP test client over the SQLite file the daemon wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from tests.support.dashboard import client, fake_nvml_env, isolated_env, settings_for, store_rich_run


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, Path]]:
    """(HTTP client, run id, home) after a real daemon stored RICH_RUN and stopped (flushing its series)."""
    tmp = tmp_path_factory.mktemp("rich")
    env = fake_nvml_env(isolated_env(tmp / "home", TRACKIOD_HEARTBEAT_INTERVAL_S="0.5"), tmp)
    run_id = store_rich_run(env, tmp)
    home = tmp / "home"
    yield client(settings_for(home)), run_id, home


def test_system_panel_aligns_the_hosts_series_to_the_run(store: Any) -> None:
    c, run_id, _ = store
    body = c.get("/api/system", params={"project": "rich", "runs": run_id, "width": 300}).json()
    assert body["available"] is True
    charts = {chart["key"]: chart for chart in body["charts"]}
    for key in ("gpu.0.power_w", "gpu.1.power_w", "gpu.0.utilization_pct", "gpu.0.memory_used_bytes", "cpu.percent"):
        assert key in charts, f"{key} missing from {sorted(charts)}"
    assert {"memory.used_bytes", "process.rss_bytes", "gpu.energy_j"} <= set(charts)
    assert charts["gpu.0.power_w"]["section"] == "GPU power" and charts["gpu.0.power_w"]["unit"] == "W"
    power = charts["gpu.0.power_w"]
    series = power["series"][0]
    assert series["run"] == run_id and series["points"] >= 3
    # x is seconds since the run started: inside the run's window, not epoch time.
    xs = [x for x in power["x"] if x is not None]
    assert xs[0] >= 0 and xs[-1] < 120
    # The fake's power: idle 50 W + 80 % of 350 W on the declared GPU, idle on the other.
    assert {round(v) for v in series["y"] if v is not None} == {330}
    assert {round(v) for v in charts["gpu.1.power_w"]["series"][0]["y"] if v is not None} == {50}
    # Energy: the cumulative integral of the used GPU's power rises to about the run's attributed joules.
    energy = [v for v in charts["gpu.energy_j"]["series"][0]["y"] if v is not None]
    assert energy == sorted(energy) and energy[-1] > 100
    report = body["energy"][run_id]
    assert report["gpu_joules"] > 100 and [g["index"] for g in report["gpus"]] == [0]
    assert energy[-1] == pytest.approx(report["gpu_joules"], rel=0.35)
    # The process series are the run's own pid's, not the node's total.
    rss = [v for v in charts["process.rss_bytes"]["series"][0]["y"] if v is not None]
    node = [v for v in charts["memory.used_bytes"]["series"][0]["y"] if v is not None]
    assert 10e6 < max(rss) < min(node)


def test_system_panel_reduces_to_the_width_and_answers_empty_for_unknown_runs(store: Any) -> None:
    c, run_id, _ = store
    narrow = c.get("/api/system", params={"project": "rich", "runs": run_id, "width": 2}).json()
    power = next(ch for ch in narrow["charts"] if ch["key"] == "gpu.0.power_w")
    assert power["reduced"] is True and len(power["x"]) <= 4
    none = c.get("/api/system", params={"project": "rich", "runs": "nope"}).json()
    assert none == {"available": True, "width": 800, "charts": [], "energy": {}}
    assert c.get("/api/system", params={"project": "rich", "runs": run_id, "width": 5000}).status_code == 400


def test_run_carries_energy_contexts_and_the_info_features(store: Any) -> None:
    c, run_id, _ = store
    run = c.get("/api/run", params={"project": "rich", "run": run_id}).json()
    assert run["energy"]["recorded"] and run["energy"]["gpu_kwh"] > 0 and run["energy"]["gpu_hours"] > 0
    assert run["energy"]["co2eq_kg"] > 0
    assert run["contexts"] == [{"key": "loss", "context": {"subset": "val"}, "points": 10}]
    assert c.get("/api/info").json()["features"]["media"] is True


def test_media_index_and_images_served_from_the_media_folder(store: Any) -> None:
    c, run_id, home = store
    index = c.get("/api/media", params={"project": "rich", "run": run_id}).json()
    kinds = {k["key"]: (k["kind"], k["count"]) for k in index["keys"]}
    assert kinds == {
        "embedding": ("array", 1),
        "predictions": ("table", 1),
        "report": ("html", 1),
        "samples": ("image", 4),
        "weights": ("histogram", 10),
    }
    images = c.get("/api/media/values", params={"project": "rich", "run": run_id, "key": "samples"}).json()
    assert [v["step"] for v in images["values"]] == [0, 10, 20, 30]
    last = images["values"][-1]
    assert (last["width"], last["height"], last["caption"]) == (32, 24, "step 30")
    png = c.get(f"/media/{last['path']}")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert (home / "media" / last["path"]).read_bytes() == png.content
    pixels = PILImage.open(home / "media" / last["path"])
    assert pixels.getpixel((0, 0)) == (255, 0, 0) and pixels.getpixel((31, 10)) == (0, 0, 200)
    html = c.get("/api/media/values", params={"project": "rich", "run": run_id, "key": "report"}).json()
    assert "<h1 id='x'>Report</h1>" in c.get(f"/media/{html['values'][0]['path']}").text


def test_table_pages_histogram_heatmap_and_array_summary(store: Any) -> None:
    c, run_id, _ = store
    params = {"project": "rich", "run": run_id}
    page = c.get("/api/media/values", params={**params, "key": "predictions", "offset": 100, "limit": 50}).json()
    assert page["columns"] == ["id", "label", "score"] and page["total"] == 120 and page["steps"] == [40]
    assert len(page["rows"]) == 20 and page["rows"][0] == [100, "item-100", 1.0]
    hist = c.get("/api/media/values", params={**params, "key": "weights"}).json()
    heat = hist["heatmap"]
    assert heat["steps"] == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36] and len(heat["edges"]) == 65
    # Rebinning keeps every step's total count (500 samples each) and moves the mass as the mean grows.
    assert all(sum(row) == pytest.approx(500) for row in heat["counts"])
    centers = [(a + b) / 2 for a, b in zip(heat["edges"], heat["edges"][1:])]
    means = [sum(n * x for n, x in zip(row, centers)) / 500 for row in heat["counts"]]
    assert means[-1] - means[0] > 2.5
    assert len(hist["values"][0]["values"]) == 20 and len(hist["values"][0]["bins"]) == 21
    array = c.get("/api/media/values", params={**params, "key": "embedding"}).json()["values"][0]
    assert (array["dtype"], array["shape"], array["min"], array["max"], array["mean"]) == (
        "float32",
        [3, 4],
        0.0,
        11.0,
        5.5,
    )


def test_alerts_and_artifacts(store: Any) -> None:
    c, run_id, _ = store
    alerts = c.get("/api/alerts", params={"project": "rich"}).json()["alerts"]
    assert [(a["title"], a["level"], a["run_id"]) for a in alerts] == [("loss spike", "WARN", run_id)]
    assert c.get("/api/alerts", params={"project": "rich", "run": "other"}).json() == {"alerts": [], "levels": {}}
    artifacts = c.get("/api/artifacts", params={"project": "rich", "run": run_id}).json()
    produced, used = artifacts["produced"], artifacts["used"]
    assert [(a["name"], a["type"], a["version"], a["file_count"]) for a in produced] == [
        ("toy-data", "dataset", "v0", 1)
    ]
    assert "latest" in produced[0]["aliases"] and [a["name"] for a in used] == ["toy-data"]


def test_context_series_are_extra_lines_of_their_chart(store: Any) -> None:
    c, run_id, _ = store
    keys = {k["key"]: k for k in c.get("/api/keys", params={"project": "rich", "runs": run_id}).json()["keys"]}
    assert keys["loss"]["contexts"] == 1 and keys["loss"]["points"] == 50
    body = c.get("/api/chart", params={"project": "rich", "key": "loss", "runs": run_id}).json()
    plain, val = body["series"]
    assert "context" not in plain and val["context"] == {"subset": "val"}
    assert (plain["points"], val["points"]) == (40, 10)
    at = dict(zip(body["x"], val["y"]))
    assert at[4] == pytest.approx(2.0 / 5) and at[5] is None


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/api/media", {"project": "rich", "run": "nope"}, 404, "no run 'nope'"),
        ("/api/media/values", {"project": "rich", "run": "RUN", "key": "loss"}, 404, "no rich values under key 'loss'"),
        ("/api/media/values", {"project": "rich", "run": "RUN"}, 400, "'key'"),
        ("/api/media/values", {"project": "rich", "run": "RUN", "key": "predictions", "limit": 0}, 400, "limit"),
        ("/api/alerts", {}, 400, "'project'"),
        ("/api/artifacts", {"project": "rich"}, 400, "'run'"),
    ],
)
def test_bad_requests_are_named(store: Any, path: str, params: dict[str, Any], status: int, message: str) -> None:
    c, run_id, _ = store
    params = {k: (run_id if v == "RUN" else v) for k, v in params.items()}
    resp = c.get(path, params=params)
    assert resp.status_code == status and message in resp.json()["error"]
