"""Issue 15 part 3, the sweep view: ``/api/sweep``'s columns (exact, every run) and the view in headless Chromium:
parallel coordinates, the scatter, the best runs, brushes (from the URL and dragged) selecting the runs they keep.

The store is written with the daemon's own writer and served by the dashboard server alone; screenshots go to
``TRACKIOD_SCREENSHOTS`` (tests/support/screenshots.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from tests.support.browser import READY
from tests.support.dashboard import client, settings_for
from tests.support.screenshots import save_view

RUNS = 300
OPTIMIZERS = ("adamw", "sgd", "lion")


def run_values(r: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run r's config and summary: lr over four decades, a categorical optimizer, a nested constant, a loss that is
    lowest for lr near 1e-3 with adamw; every 50th run has no summary loss and every 30th no batch size."""
    lr = 10 ** (-5 + 4 * (r % 100) / 99)
    config: dict[str, Any] = {
        "lr": lr,
        "optimizer": OPTIMIZERS[r % 3],
        "model": {"depth": 2 + r % 4, "act": "gelu"},
        "seed": r,
    }
    if r % 30:
        config["batch_size"] = 32 * (1 + r % 4)
    loss = abs(math.log10(lr) + 3) + (0 if r % 3 == 0 else 0.5) + r * 1e-5
    summary: dict[str, Any] = {"train/acc": 1 / (1 + loss), "_step": 99, "sample": {"_type": "histogram"}}
    if r % 50:
        summary["train/loss"] = loss
    return config, summary


def write_sweep(home: Path, runs: int = RUNS, project: str = "sweep") -> None:
    from trackiod.store.writer import Store

    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(home / "trackiod.db")
    try:
        with store.conn:
            for r in range(runs):
                config, summary = run_values(r)
                row = store.create_run(project, f"s{r:04d}", f"trial-{r}", {}, config, "h", 1)
                store.update_run(int(row["id"]), state="finished", summary=json.dumps(summary), last_step=99)
    finally:
        store.close()


def decode_sweep(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    (head_len,) = np.frombuffer(body[:4], "<u4")
    header = json.loads(body[4 : 4 + int(head_len)])
    arrays = np.frombuffer(body, "<f8", offset=4 + int(head_len))
    n = header["n"]
    columns = {}
    for i, column in enumerate([*header["config"], *header["summary"]]):
        columns[column["key"]] = arrays[i * n : (i + 1) * n]
    return header, columns


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "home"
    write_sweep(path)
    return path


def best_runs(brush: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """Run ids with a loss, inside ``brush``, lowest loss first: what the view must select."""
    kept = []
    for r in range(RUNS):
        config, summary = run_values(r)
        if "train/loss" not in summary:
            continue
        if brush and not all(key in config and lo <= config[key] <= hi for key, (lo, hi) in brush.items()):
            continue
        kept.append((summary["train/loss"], f"s{r:04d}"))
    return [run for _, run in sorted(kept)]


def test_sweep_api_columns_are_exact(home: Path) -> None:
    with client(settings_for(home)) as http:
        response = http.get("/api/sweep", params={"project": "sweep"})
        assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
        header, columns = decode_sweep(response.content)
        missing = http.get("/api/sweep")
        assert missing.status_code == 400 and "project" in missing.json()["error"]
        empty, _ = decode_sweep(http.get("/api/sweep", params={"project": "nope"}).content)
    assert header["n"] == RUNS and header["runs"][0] == f"s{RUNS - 1:04d}", "newest first"
    assert [c["key"] for c in header["config"]] == ["batch_size", "lr", "model.act", "model.depth", "optimizer", "seed"]
    config = {c["key"]: c for c in header["config"]}
    assert config["optimizer"]["categories"] == sorted(OPTIMIZERS) and config["model.act"]["distinct"] == 1
    assert [c["key"] for c in header["summary"]] == ["train/acc", "train/loss"], "numbers only, no _ keys"
    for i, run in enumerate(header["runs"]):
        r = int(run[1:])
        cfg, summary = run_values(r)
        assert columns["lr"][i] == cfg["lr"], "exact doubles"
        assert config["optimizer"]["categories"][int(columns["optimizer"][i])] == cfg["optimizer"]
        assert (
            math.isnan(columns["batch_size"][i])
            if "batch_size" not in cfg
            else columns["batch_size"][i] == cfg["batch_size"]
        )
        assert (
            math.isnan(columns["train/loss"][i])
            if "train/loss" not in summary
            else columns["train/loss"][i] == summary["train/loss"]
        )
    assert empty["n"] == 0


def test_sweep_api_answer_follows_updates(home: Path, tmp_path: Path) -> None:
    """The answer is reused only while no run of the project changed: a new summary shows at once."""
    from trackiod.store.writer import Store

    write_sweep(tmp_path / "h", runs=3, project="p")
    with client(settings_for(tmp_path / "h")) as http:
        before, first = decode_sweep(http.get("/api/sweep", params={"project": "p"}).content)
        store = Store(tmp_path / "h" / "trackiod.db")
        with store.conn:
            store.update_run(1, summary=json.dumps({"train/loss": 42.0}), updated_at=9e9)
        store.close()
        after, cols = decode_sweep(http.get("/api/sweep", params={"project": "p"}).content)
    assert first["train/loss"][before["runs"].index("s0000")] != 42.0
    assert cols["train/loss"][after["runs"].index("s0000")] == 42.0


@pytest.fixture(scope="module")
def served(home: Path) -> Iterator[str]:
    from trackiod.dashboard.app import DashboardServer

    server = DashboardServer(settings_for(home), port=0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def selected(page: Any) -> list[str]:
    runs = page.evaluate("new URLSearchParams(location.search).get('runs')")
    return runs.split(",") if runs else []


@pytest.mark.browser
def test_sweep_view_draws_every_run_and_the_best(page: Any, served: str) -> None:
    page.goto(f"{served}/?project=sweep&view=sweep&live=0")
    page.wait_for_selector(READY)
    lines = page.locator("#sweep-parallel")
    assert int(lines.get_attribute("data-lines")) == RUNS, "every run drawn, the ones without the metric in grey"
    assert lines.get_attribute("data-axes").split("|") == [
        "batch_size",
        "lr",
        "model.depth",
        "optimizer",
        "seed",
        "train/loss",
    ]
    with_x = [run for run in best_runs() if "batch_size" in run_values(int(run[1:]))[0]]
    assert int(page.locator("#sweep-scatter").get_attribute("data-points")) == len(with_x), "x: batch_size"
    rows = page.locator("#sweep-best tbody tr").evaluate_all("rs => rs.map(r => r.dataset.run)")
    assert rows == best_runs()[:20]
    assert "lowest first" in page.locator("#sweep-best h3").inner_text()
    save_view(page, "sweep-view")
    page.locator("#theme-toggle").click()
    page.wait_for_selector("html[data-theme='dark'] body[data-view='sweep'][data-ready='1'] #sweep-best tbody tr")
    save_view(page, "sweep-view-dark")


@pytest.mark.browser
def test_sweep_brush_in_url_selects_those_runs(page: Any, served: str) -> None:
    brush = quote("1e-4..1e-2@lr;0..0@optimizer")
    page.goto(f"{served}/?project=sweep&view=sweep&live=0&brush={brush}&sweep_metric=train/loss")
    page.wait_for_selector(READY)
    expected = [run for run in best_runs({"lr": (1e-4, 1e-2)}) if run_values(int(run[1:]))[0]["optimizer"] == "adamw"]
    assert page.locator("#sweep-best tbody tr").evaluate_all("rs => rs.map(r => r.dataset.run)") == expected[:20]
    inside = [r for r in range(RUNS) if 1e-4 <= run_values(r)[0]["lr"] <= 1e-2 and r % 3 == 0]
    assert page.locator("#sweep-count").inner_text().startswith(f"{len(inside)} of 300 runs")
    # Loading a view with brushes keeps the selection of the URL; a brush changed on the page selects.
    page.locator("#sweep-goal").select_option("max")
    page.wait_for_function("() => new URLSearchParams(location.search).get('sweep_goal') === 'max'")
    assert selected(page) == list(reversed(expected))[:200]
    page.locator("#tabs a[data-view='charts']").click()
    page.wait_for_selector(READY)
    assert page.locator("#run-list .row.selected").count() >= 1


@pytest.mark.browser
def test_sweep_brush_dragged_on_an_axis_and_the_scatter(page: Any, served: str) -> None:
    page.goto(f"{served}/?project=sweep&view=sweep&live=0&sweep_metric=train/loss&sweep_goal=min")
    page.wait_for_selector(READY)
    canvas = page.locator("#sweep-parallel")
    box = canvas.bounding_box()
    axes = canvas.get_attribute("data-axes").split("|")
    # The lr axis: drag over its upper half (lr from about 1e-3 to 1e-1 on its log scale).
    left, right, top, bottom = 60, 70, 34, 24
    x = box["x"] + left + axes.index("lr") * (box["width"] - left - right) / (len(axes) - 1)
    y_top, y_mid = box["y"] + top + 2, box["y"] + top + (box["height"] - top - bottom) / 2
    page.mouse.move(x, y_mid)
    page.mouse.down()
    page.mouse.move(x, y_top, steps=4)
    page.mouse.up()
    page.wait_for_function("() => (new URLSearchParams(location.search).get('brush') || '').includes('@lr')")
    brush = page.evaluate("new URLSearchParams(location.search).get('brush')")
    lo, hi = (float(v) for v in brush.split("@")[0].split(".."))
    assert lo == pytest.approx(1e-3, rel=0.05) and hi == pytest.approx(1e-1, rel=0.1)
    expected = best_runs({"lr": (lo, hi)})
    assert selected(page) == expected[:200]
    assert (
        page.locator("#sweep-count")
        .inner_text()
        .startswith(f"{sum(1 for r in range(RUNS) if lo <= run_values(r)[0]['lr'] <= hi)} of 300")
    )
    save_view(page, "sweep-brushed")
    # A rectangle on the scatter brushes its x key and the metric; a click on the lr axis drops its brush.
    page.mouse.click(x, y_mid)
    page.wait_for_function("() => !(new URLSearchParams(location.search).get('brush') || '').includes('@lr')")
    scatter = page.locator("#sweep-scatter").bounding_box()
    page.mouse.move(scatter["x"] + 70, scatter["y"] + 20)
    page.mouse.down()
    page.mouse.move(scatter["x"] + scatter["width"] - 20, scatter["y"] + scatter["height"] - 40, steps=4)
    page.mouse.up()
    page.wait_for_function("() => (new URLSearchParams(location.search).get('brush') || '').includes('@train/loss')")
    assert selected(page), "the scatter's rectangle selected runs"
