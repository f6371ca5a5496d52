"""The dashboard in headless Chromium (Debian's package, driven by Playwright's Python API), against a real daemon.

A real daemon serves the dashboard (``TRACKIOD_DASHBOARD=1``) and real training scripts log to it. Nothing is
faked. Screenshots go to test-output/screenshots/ (gitignored). Needs /usr/bin/chromium, which
scripts/setup.sh installs as root; without it these tests skip and say so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import READY, shot
from tests.support.daemons import Daemons, wait_for
from tests.support.dashboard import SERVING, isolated_env
from tests.support.scripts import run_script, spawn_script

pytestmark = pytest.mark.browser

LOG_RUNS = """
import trackio_shim as wandb
for i, lr in enumerate((0.1, 0.01, 0.001)):
    group = "sweep-a" if i < 2 else None
    wandb.init(project="browser", name=f"run-{i}", config={"lr": lr, "model": {"depth": 4}}, tags=["demo"], group=group)
    wandb.define_metric("val/*", step_metric="epoch")
    for step in range(2000):
        data = {"train/loss": 1.0 / (step + 1) + i * 0.1, "train/acc": step / 2000}
        if step % 200 == 0:
            data.update({"val/loss": 2.0 / (step + 2), "epoch": step // 200})
        wandb.log(data)
    wandb.finish()
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """A real daemon serving the dashboard, with three finished runs logged by a real training script.

    Returns (dashboard base URL, the environment to log against it, run ids by name).
    """
    tmp = tmp_path_factory.mktemp("browser")
    env = isolated_env(tmp / "home", **SERVING)
    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon.log").start()
        status = daemon.status()
        assert status is not None and status["dashboard"]
        run_script(LOG_RUNS, env)
        listing = run_script("import trackio_shim as w\nfor r in w.Api().runs('browser'): print(r.id, r.name)", env)
        ids = {name: run_id for run_id, name in _pairs(listing)}
        yield status["dashboard"].rstrip("/"), env, ids


def _pairs(result: Any) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in result.stdout.strip().splitlines()]  # type: ignore[misc]


def chart(page: Any, key: str) -> Any:
    return page.locator(f".chart[data-key='{key}']")


def test_projects_page_lists_the_project(served: Any, page: Any) -> None:
    base, _, _ = served
    page.goto(base + "/")
    page.wait_for_selector(READY)
    page.locator("a[data-project='browser']").click()
    page.wait_for_selector(".chart[data-key='train/loss'] canvas")
    assert "project=browser" in page.url
    shot(page, "projects-then-charts")


def test_select_runs_charts_render_with_hover_values(served: Any, page: Any) -> None:
    base, _, ids = served
    page.goto(f"{base}/?project=browser")
    page.wait_for_selector(READY)
    assert chart(page, "train/loss").get_attribute("data-series") == "3", "the newest runs are selected by default"
    page.locator("#select-none").click()
    page.wait_for_selector("text=Select runs in the sidebar")
    for name in ("run-0", "run-2"):
        page.locator(f".row[data-run='{ids[name]}'] input[type=checkbox]").click()
        page.wait_for_selector(READY)
    loss = chart(page, "train/loss")
    assert loss.get_attribute("data-series") == "2"
    assert int(loss.get_attribute("data-points") or 0) >= 2 * 1000
    assert re.search(r"runs=[^&]*" + ids["run-0"], page.url) and ids["run-2"] in page.url
    groups = page.locator("section.section").evaluate_all("nodes => nodes.map(n => n.dataset.group)")
    assert groups == ["charts", "train", "val"], "sections by key prefix"
    # The chart is drawn: its canvas has coloured pixels, not just a blank box.
    inked = loss.locator("canvas").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i+3] && (d[i] < 200 || d[i+2] < 200)) n++; return n; }"
    )
    assert inked > 500
    box = loss.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    tooltip = loss.locator(".tooltip")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    assert "run-0" in text and "run-2" in text and re.search(r"step ≈ \d+", text) and "null" not in text
    colours = tooltip.locator(".swatch").evaluate_all("s => s.map(n => getComputedStyle(n).backgroundColor)")
    assert len(set(colours)) == 2, "each run's value is marked with its own colour"
    shot(page, "charts-two-runs-hover")


def test_val_chart_uses_the_step_metric_and_x_axis_can_change(served: Any, page: Any) -> None:
    base, _, _ = served
    page.goto(f"{base}/?project=browser&metrics=val/loss")
    page.wait_for_selector(READY)
    assert page.locator(".chart").count() == 1
    assert chart(page, "val/loss").get_attribute("data-xaxis") == "epoch", "define_metric's step_metric by default"
    assert "x: epoch" in chart(page, "val/loss").inner_text()
    page.select_option("#xaxis", "relative")
    page.wait_for_selector(READY)
    assert "xaxis=relative" in page.url
    assert chart(page, "val/loss").get_attribute("data-xaxis") == "relative"
    page.select_option("#xaxis", "time")
    page.wait_for_selector(READY)
    assert chart(page, "val/loss").get_attribute("data-xaxis") == "time"
    page.locator("#logy").check()
    assert "logy=1" in page.url and chart(page, "val/loss").locator("canvas").count() == 1
    shot(page, "time-axis-log-y")


def test_embedding_parameters_show_exactly_one_set_of_charts(served: Any, page: Any) -> None:
    base, _, ids = served
    url = (
        f"{base}/?project=browser&metrics=train/loss&runs=run-0,{ids['run-1']}"
        "&sidebar=hidden&navbar=hidden&xaxis=step&smoothing=0.6"
    )
    page.goto(url)
    page.wait_for_selector(READY)
    assert page.locator(".chart").count() == 1
    assert not page.locator("#sidebar").is_visible() and not page.locator("#navbar").is_visible()
    # Two runs, each drawn smoothed plus its raw line faintly.
    assert chart(page, "train/loss").get_attribute("data-series") == "4"
    # smoothing=0.6 is an EMA weight from trackiod's links of before (trackio's smoothing is a 0-100 window).
    assert page.locator("#ema").input_value() == "0.6" and page.locator("#smoothing").input_value() == "0"
    assert "runs=run-0," in page.url, "the link reproduces the view"
    shot(page, "embed-one-chart")


def test_group_mean_with_min_max_band(served: Any, page: Any) -> None:
    """Runs sharing a group (as one run per rank of a multi-GPU job does) drawn as their mean over a min-max band."""
    base, _, _ = served
    page.goto(f"{base}/?project=browser&metrics=train/loss&aggregate=group")
    page.wait_for_selector(READY)
    loss = chart(page, "train/loss")
    assert loss.get_attribute("data-lines") == "2", "the group's mean, and run-2 (no group) on its own"
    assert loss.get_attribute("data-bands") == "1"
    box = loss.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    tooltip = loss.locator(".tooltip")
    tooltip.wait_for(state="visible")
    assert "group sweep-a mean (2 runs)" in tooltip.inner_text() and "run-2" in tooltip.inner_text()
    shot(page, "group-band")
    page.select_option("#aggregate", "")
    assert loss.get_attribute("data-lines") == "3" and "aggregate" not in page.url


def test_zoom_refetches_the_range_and_lives_in_the_url(served: Any, page: Any) -> None:
    base, _, _ = served
    page.goto(f"{base}/?project=browser&metrics=train/acc")
    page.wait_for_selector(READY)
    over = chart(page, "train/acc").locator(".u-over")
    box = over.bounding_box()
    with page.expect_request(re.compile(r"/api/chart\?.*xmin=")):
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 20, steps=5)
        page.mouse.up()
    page.wait_for_selector(READY)
    assert "xmin=" in page.url and "xmax=" in page.url
    page.locator("#reset-zoom").click()
    page.wait_for_selector(READY)
    assert "xmin=" not in page.url


def test_runs_table_search_sort_and_run_page(served: Any, page: Any) -> None:
    base, _, ids = served
    page.goto(f"{base}/?project=browser&view=runs")
    page.wait_for_selector("#runs-table .row.head")
    table = page.locator("#runs-table")
    assert table.locator(".row[data-run]").count() == 3
    header = table.locator(".row.head").inner_text()
    for column in ("state", "duration", "host", "tags", "group", "c:lr", "s:train/loss"):
        assert column in header
    page.locator("#run-search").fill("run-1")
    wait_for(lambda: table.locator(".row[data-run]").count() == 1, timeout=5, what="the search to filter")
    page.locator("#run-search").fill("")
    wait_for(lambda: table.locator(".row[data-run]").count() == 3, timeout=5, what="the filter to clear")
    table.locator(".row.head .cell", has_text="c:lr").click()
    order = table.locator(".row[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert order == [ids["run-2"], ids["run-1"], ids["run-0"]], "sorted by config lr, ascending"
    assert "sort=config.lr" in page.url
    shot(page, "runs-table")
    table.locator(f".row[data-run='{ids['run-1']}']").click()
    page.wait_for_selector(".chart[data-key='train/loss'] canvas")
    text = page.locator("#main").inner_text()
    assert "run-1" in text and "model.depth" in text and "0.01" in text and "No media logged" in text
    shot(page, "run-page")


def test_config_diff_and_system_panel(served: Any, page: Any) -> None:
    base, _, ids = served
    page.goto(f"{base}/?project=browser&view=diff&runs={ids['run-0']},{ids['run-1']}")
    page.wait_for_selector("#config-diff")
    rows = page.locator("#config-diff tr[data-key]").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert rows == ["lr"], "only the keys that differ"
    page.get_by_label("differences only").uncheck()
    assert page.locator("#config-diff tr[data-key='model.depth']").count() == 1
    shot(page, "config-diff")
    page.goto(f"{base}/?project=browser&view=system")
    # The daemon samples the CPU and memory (no GPU here); its series reach the database in 30 s chunks, so the
    # panel shows either those charts or says none cover the runs yet (tests/dashboard/test_dashboard_browser_rich.py
    # checks the drawn panel).
    page.wait_for_selector("#system-empty, .system-chart[data-key='cpu.percent']")


LIVE_SCRIPT = """
import os, time, trackio_shim as wandb
marker = os.environ["MARKER"]
run = wandb.init(project="browser-live", name="live")
for step in range(50):
    wandb.log({"loss": 1.0 / (step + 1)})
open(marker + ".tmp", "w").write(run.id)
os.replace(marker + ".tmp", marker)
deadline = time.time() + 60
while not os.path.exists(marker + ".go") and time.time() < deadline:
    time.sleep(0.02)  # polls for the go file, with the deadline above
for step in range(50, 120):
    wandb.log({"loss": 1.0 / (step + 1)})
wandb.finish()
"""


def test_live_update_fetches_only_new_points(served: Any, page: Any, tmp_path: Path) -> None:
    base, env, _ = served
    marker = tmp_path / "marker"
    proc = spawn_script(LIVE_SCRIPT, {**env, "MARKER": str(marker)})
    try:
        wait_for(marker.exists, timeout=30, what="the live run to log its first 50 steps")
        run_id = marker.read_text()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/api/chart" in r.url else None)
        page.goto(f"{base}/?project=browser-live&runs={run_id}")
        page.wait_for_selector(READY)
        loss = chart(page, "loss")
        wait_for(lambda: loss.get_attribute("data-points") == "50", timeout=10, what="the first 50 points")
        shot(page, "live-before")
        (tmp_path / "marker.go").write_text("")
        wait_for(lambda: loss.get_attribute("data-points") == "120", timeout=20, what="live points to arrive")
        wait_for(
            lambda: "finished" in page.locator(f".row[data-run='{run_id}']").inner_text(),
            timeout=20,
            what="the sidebar to show the run finished",
        )
        shot(page, "live-after")
        live = [u for u in requests if "after=" in u]
        assert live, "live updates ask for points after the last step they have"
        assert all(re.search(rf"after={run_id}%3A\d+", u) for u in live), live
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_token_protected_dashboard_loads_with_its_url(served: Any, browser: Any, tmp_path: Path) -> None:
    from trackio_shim.settings import TrackiodSettings
    from trackiod.dashboard.app import DashboardServer

    _, env, _ = served
    settings = TrackiodSettings.load(environ={**env, "TRACKIOD_DASHBOARD_TOKEN": "tok-123"})
    server = DashboardServer(settings, port=0)
    server.start()
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        tab = context.new_page()
        refused = tab.goto(f"http://127.0.0.1:{server.port}/?project=browser")
        assert refused is not None and refused.status == 401
        tab.goto(server.url("browser"))
        tab.wait_for_selector(".chart[data-key='train/loss'] canvas", timeout=15_000)
        tab.wait_for_selector(READY)
        shot(tab, "token-dashboard")
    finally:
        context.close()
        server.stop()


def test_page_ready_time_is_recorded(served: Any, page: Any) -> None:
    """Not a budget (benchmarks/ has those): a sanity bound that the page is ready in seconds, not minutes."""
    base, _, _ = served
    started = time.monotonic()
    page.goto(f"{base}/?project=browser")
    page.wait_for_selector(READY)
    assert time.monotonic() - started < 30
    assert page.evaluate("window.trackiodReadyMs") > 0
