"""Issue 15 in headless Chromium: each defect found on main at 4e7530e (its URL in the test), what trackio's
dashboard had and this one lacked (legend, dark mode, export, fullscreen, reorder, log x, plots per row, group by
a config key), trackio's URL parameters with trackio's meanings, and the looks.

A real daemon serves the dashboard and real training scripts log to it; the 1,200-run table is written with the
daemon's own writer and served by the dashboard server alone. Screenshots of every view go to
``TRACKIOD_SCREENSHOTS`` (default: a folder in the system's temporary directory; tests/support/screenshots.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import READY
from tests.support.daemons import Daemons, wait_for
from tests.support.dashboard import SERVING, fill, isolated_env, settings_for
from tests.support.screenshots import save_view
from tests.support.scripts import run_script, spawn_script

pytestmark = pytest.mark.browser

# 12 runs of two optimisers: a loss, a learning-rate schedule from 0.0025 down to 0, a metric falling over ten
# decades (for log y), and a short project of 5 steps (integer ticks).
LOG_RUNS = """
import trackio_shim as wandb
for i in range(12):
    opt = "adam" if i % 2 == 0 else "sgd"
    wandb.init(project="polish", name=f"run-{i:02d}", config={"opt": opt, "lr": 0.0025, "wd": 0.0005, "seed": i})
    for step in range(300):
        wandb.log({"train/loss": 1.0 / (step + 1) + i * 0.05 + (0.02 if step % 7 == 0 else 0.0),
                   "train/acc": step / 300, "lr": 0.0025 * (1 - step / 299), "tiny": 10.0 ** (-step / 30)})
    wandb.finish()
wandb.init(project="short", name="five-steps")
for step in range(5):
    wandb.log({"loss": 1.0 / (step + 1)})
wandb.finish()
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """(dashboard base URL, the environment to log against its daemon, run ids by name)."""
    tmp = tmp_path_factory.mktemp("polish")
    env = isolated_env(tmp / "home", **SERVING)
    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon.log").start()
        status = daemon.status()
        assert status is not None and status["dashboard"]
        run_script(LOG_RUNS, env)
        listing = run_script("import trackio_shim as w\nfor r in w.Api().runs('polish'): print(r.id, r.name)", env)
        ids = {name: run_id for run_id, name in (line.split(" ", 1) for line in listing.stdout.split("\n") if line)}
        yield status["dashboard"].rstrip("/"), env, ids


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard server alone over 1,200 runs of 10 steps (the table's header and the run page's sidebar)."""
    from trackiod.dashboard.app import DashboardServer

    home = tmp_path_factory.mktemp("many") / "home"
    fill(home, project="many", runs=1200, points=10)
    server = DashboardServer(settings_for(home), port=0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def chart(page: Any, key: str) -> Any:
    return page.locator(f".chart[data-key='{key}']")


def ticks(page: Any, key: str, axis: str) -> list[str]:
    return json.loads(chart(page, key).get_attribute(f"data-{axis}ticks") or "[]")


def open_ready(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(READY)


# ------------------------------------------------------------------------------------------------ defects


def test_1_y_ticks_keep_the_digits_that_tell_them_apart(served: Any, page: Any) -> None:
    """Defect 1: a learning-rate axis read 0.002, 0.002, 0.001, 0.001, 0; log y labelled every decade below 1e-3 0."""
    base, _, ids = served
    open_ready(page, f"{base}/?project=polish&metrics=lr,tiny&runs={ids['run-00']}")
    lr = [t for t in ticks(page, "lr", "y") if t]
    assert len(lr) >= 3 and len(set(lr)) == len(lr), lr
    assert all(float(t) <= 0.0026 for t in lr) and any(t not in ("0", "0.000") for t in lr), lr
    open_ready(page, f"{base}/?project=polish&metrics=tiny&logy=1&runs={ids['run-00']}")
    tiny = [t for t in ticks(page, "tiny", "y") if t]
    assert tiny and "0" not in tiny and len(set(tiny)) == len(tiny), tiny
    assert any(re.fullmatch(r"1e-\d+", t) for t in tiny), tiny
    save_view(page, "defect1-log-y-ticks")


def test_2_run_page_has_no_stray_null(served: Any, page: Any) -> None:
    """Defect 2: `null` printed under "Metrics" on every run page."""
    base, _, ids = served
    open_ready(page, f"{base}/?project=polish&view=run&run={ids['run-03']}")
    page.wait_for_selector(".chart[data-key='train/loss'] canvas")
    assert not re.search(r"(^|\n)\s*null\s*(\n|$)", page.locator("#main").inner_text())
    save_view(page, "run-page", full_page=True)


LIVE_LATE = """
import os, time, trackio_shim as wandb
go = os.environ["GO"]
deadline = time.time() + 60
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.02)  # waits for the test's go file, with the deadline above
run = wandb.init(project="late", name="second")
for step in range(30):
    wandb.log({"loss": 2.0 / (step + 1)})
time.sleep(1.5)  # the page polls every 0.5 s: the new metric arrives in a later poll than the run
for step in range(30, 40):
    wandb.log({"loss": 2.0 / (step + 1), "extra/new_metric": step})
wandb.finish()
"""


def test_3_live_updates_chart_a_run_started_after_the_page_opened(served: Any, page: Any, tmp_path: Path) -> None:
    """Defect 3: a run started after the page was opened (and its new metrics) never reached the charts."""
    base, env, _ = served
    run_script(
        'import trackio_shim as w\nr = w.init(project="late", name="first")\nw.log({"loss": 1.0})\nw.finish()', env
    )
    go = tmp_path / "go"
    proc = spawn_script(LIVE_LATE, {**env, "GO": str(go)})
    try:
        open_ready(page, f"{base}/?project=late")
        assert chart(page, "loss").get_attribute("data-series") == "1"
        go.write_text("")
        wait_for(lambda: chart(page, "loss").get_attribute("data-series") == "2", timeout=30, what="the new run's line")
        wait_for(lambda: chart(page, "extra/new_metric").count() == 1, timeout=30, what="the new metric's chart")
        save_view(page, "live-new-run")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_4_system_byte_axes_fit_and_small_values_are_bytes(served: Any, page: Any) -> None:
    """Defect 4: `95.4 MiB/s` drawn as `5.4 MiB/s` (a 70 px axis), values under 1 KiB labelled `iB`."""
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&view=system")
    got = page.evaluate(
        """async () => { const m = await import('/static/system.js');
        const labels = [m.fmtUnit(95.4 * 2 ** 20, 'bytes/s'), m.fmtUnit(512, 'bytes'), m.fmtUnit(0, 'bytes/s')];
        return { labels, size: m.valueAxisSize(labels) }; }"""
    )
    assert got["labels"] == ["95.4 MiB/s", "512 B", "0 B/s"]
    assert got["size"] >= len("95.4 MiB/s") * 6.5 + 15, "the axis holds its longest label, tick and gap"


def test_5_unknown_x_axis_says_so_and_still_charts(served: Any, page: Any) -> None:
    """Defect 5: `xaxis=nope` gave blank charts and no message."""
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&xaxis=nope")
    assert "nope" in page.locator("#xaxis-unknown").inner_text()
    loss = chart(page, "train/loss")
    assert loss.get_attribute("data-xaxis") == "step" and int(loss.get_attribute("data-points") or 0) > 0
    save_view(page, "defect5-unknown-xaxis")


def test_6_smoothing_reads_trackios_window_scale(served: Any, page: Any) -> None:
    """Defect 6: trackio 0.43's `smoothing` is a 0-100 centred moving-average window read with parseInt;
    `smoothing=10` moved the slider to 0.99 while 0.5 was applied."""
    base, _, ids = served
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&runs={ids['run-00']}&smoothing=10")
    assert page.locator("#smoothing").input_value() == "10"
    loss = chart(page, "train/loss")
    assert loss.get_attribute("data-smoothing") == "window:10"
    assert loss.get_attribute("data-series") == "2", "the smoothed line and the raw one behind it"
    averaged = page.evaluate(
        "async () => { const m = await import('/static/util.js'); return m.movingAverage([0, 0, 9, 0, 0], 3); }"
    )
    assert averaged == [0, 3, 3, 3, 0], "a centred window, as trackio's"
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&runs={ids['run-00']}&smoothing=10.7")
    assert page.locator("#smoothing").input_value() == "10", "parseInt, as trackio"
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&runs={ids['run-00']}&smoothing=0")
    assert chart(page, "train/loss").get_attribute("data-smoothing") == ""
    save_view(page, "smoothing-window")


def test_7_legend_under_each_chart(served: Any, page: Any) -> None:
    """Defect 7 / part 2: an embed with the sidebar hidden had no legend; compact, "+N more", click hides."""
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&sidebar=hidden&navbar=hidden")
    loss = chart(page, "train/loss")
    assert loss.get_attribute("data-legend") == "10", "the 10 newest runs"
    assert loss.locator(".legend-item").count() == 8 and loss.locator(".legend-more").inner_text() == "+2 more"
    loss.locator(".legend-more").click()
    assert loss.locator(".legend-item").count() == 10
    first = loss.locator(".legend-item").first
    name = first.inner_text()
    first.click()
    assert loss.get_attribute("data-visible") == "9" and "off" in (first.get_attribute("class") or "")
    box = loss.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    loss.locator(".tooltip").wait_for(state="visible")
    assert name not in loss.locator(".tooltip").inner_text(), "a hidden run leaves the tooltip too"
    save_view(page, "legend-embed")


def test_8_dark_mode_follows_the_system_and_toggles(served: Any, browser: Any) -> None:
    """Defect 8: no dark mode."""
    base, _, _ = served
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="dark")
    try:
        tab = context.new_page()
        open_ready(tab, f"{base}/?project=polish&metrics=train/loss,train/acc,lr")
        assert tab.evaluate("document.documentElement.dataset.theme") == "dark"
        background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(int(c) for c in re.findall(r"\d+", background)[:3]) < 150, background
        save_view(tab, "charts-dark")
        tab.locator("#theme-toggle").click()
        assert tab.evaluate("document.documentElement.dataset.theme") == "light"
        tab.reload()
        tab.wait_for_selector(READY)
        assert tab.evaluate("document.documentElement.dataset.theme") == "light", "the choice is remembered"
        open_ready(tab, f"{base}/?project=polish&__theme=dark")
        assert tab.evaluate("document.documentElement.dataset.theme") == "dark", "trackio's __theme wins"
    finally:
        context.close()


def test_9_runs_table_header_counts_1200_runs(many_runs: str, page: Any) -> None:
    """Defect 9: the runs table header showed `1…` for 1,200 runs."""
    open_ready(page, f"{many_runs}/?project=many&view=runs")
    count = page.locator("#runs-table .row.head .cell.count")
    assert count.inner_text() == "1200"
    assert count.evaluate("c => c.scrollWidth <= c.clientWidth"), "the number fits its cell"
    save_view(page, "runs-table-1200")


def test_9_run_page_sidebar_shows_the_run_viewed(many_runs: str, page: Any) -> None:
    """Defect 9: the run page's sidebar did not show the run being viewed (here the oldest of 1,200)."""
    open_ready(page, f"{many_runs}/?project=many&view=run&run=run0")
    row = page.locator("#run-list .row[data-run='run0']")
    row.wait_for(state="visible")
    assert "selected" in (row.get_attribute("class") or "")
    assert page.locator("#run-list .row.selected").count() == 1


def test_9_step_axis_ticks_are_whole_steps(served: Any, page: Any) -> None:
    """Defect 9: fractional ticks (0.5, 1.5, ...) on an integer step axis."""
    base, _, _ = served
    open_ready(page, f"{base}/?project=short")
    labels = [t for t in ticks(page, "loss", "x") if t]
    assert labels and all(re.fullmatch(r"\d+", t) for t in labels), labels


def test_9_x_as_a_metric_does_not_chart_it_against_itself(served: Any, page: Any) -> None:
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&xaxis=train/acc")
    assert chart(page, "train/acc").count() == 0 and chart(page, "train/loss").count() == 1
    assert chart(page, "train/loss").get_attribute("data-xaxis") == "train/acc"


def test_9_a_chart_alone_in_its_section_takes_the_row(served: Any, page: Any) -> None:
    """Defect 9: a chart alone in its section took half the width at a fixed 220 px height."""
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&metrics=tiny")
    main = page.locator("#charts").bounding_box()
    canvas = chart(page, "tiny").locator("canvas").bounding_box()
    assert canvas["width"] > 0.85 * main["width"] and canvas["height"] > 260, (canvas, main)


def test_9_missing_run_project_and_filter_say_what_is_wrong(served: Any, page: Any) -> None:
    """Defect 9: a 404 run page showed raw JSON; an unknown project or a filter matching nothing misled."""
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&view=run&run=no-such-run")
    text = page.locator("#run-missing").inner_text()
    assert "no-such-run" in text and '{"error"' not in page.locator("#main").inner_text()
    save_view(page, "run-404")
    open_ready(page, f"{base}/?project=no-such-project")
    assert 'no project named "no-such-project"' in page.locator("#no-project").inner_text()
    assert page.locator("#no-project a[data-project='polish']").count() == 1
    save_view(page, "unknown-project")
    open_ready(page, f"{base}/?project=polish&metric_filter=zzz")
    assert "No metric matches the filter /zzz/" in page.locator("#no-charts").inner_text()


def test_9_small_numbers_print_short(served: Any, page: Any) -> None:
    """Defect 9: 0.0005 printed as `5.0000e-4`."""
    base, _, ids = served
    open_ready(page, f"{base}/?project=polish&view=run&run={ids['run-01']}")
    text = page.locator("table.kv").nth(1).inner_text()
    assert "5e-4" in text and "5.0000e-4" not in text and "0.0025" in text


# ------------------------------------------------------------------------------------------------ part 2


def test_export_csv_and_png(served: Any, page: Any) -> None:
    base, _, ids = served
    open_ready(page, f"{base}/?project=polish&metrics=train/acc&runs={ids['run-00']},{ids['run-01']}")
    loss = chart(page, "train/acc")
    loss.hover()
    with page.expect_download() as csv_download:
        loss.locator("[data-action=csv]").click()
    lines = Path(csv_download.value.path()).read_text().splitlines()
    assert lines[0] == "step,run-00,run-01" and len(lines) == 301
    assert lines[1].split(",")[0] == "0" and float(lines[-1].split(",")[1]) == pytest.approx(299 / 300)
    with page.expect_download() as png_download:
        loss.locator("[data-action=png]").click()
    assert png_download.value.suggested_filename == "train_acc.png"
    assert Path(png_download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fullscreen_and_escape(served: Any, page: Any) -> None:
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&metrics=train/loss,train/acc")
    loss = chart(page, "train/loss")
    loss.hover()
    loss.locator("[data-action=fullscreen]").click()
    assert "fullscreen" in (loss.get_attribute("class") or "")
    assert loss.locator("canvas").bounding_box()["width"] > 1200
    save_view(page, "chart-fullscreen")
    page.keyboard.press("Escape")
    assert "fullscreen" not in (loss.get_attribute("class") or "")


def test_drag_to_reorder_is_kept_in_the_url(served: Any, page: Any) -> None:
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish")
    keys = page.locator("section[data-group='charts'] .chart").evaluate_all("cs => cs.map(c => c.dataset.key)")
    assert keys == ["lr", "tiny"]
    page.drag_and_drop("[data-key='tiny'] .drag-handle", "[data-key='lr']")
    assert "order=" in page.url and re.search(r"order=tiny%2Clr|order=tiny,lr", page.url), page.url
    page.reload()
    page.wait_for_selector(READY)
    keys = page.locator("section[data-group='charts'] .chart").evaluate_all("cs => cs.map(c => c.dataset.key)")
    assert keys == ["tiny", "lr"]


def test_log_x_and_plots_per_row(served: Any, page: Any) -> None:
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&metrics=train/loss,train/acc,lr,tiny&logx=1&plots_per_row=3")
    assert page.locator("#logx").is_checked()
    xs = [t for t in ticks(page, "train/loss", "x") if t]
    assert "0" not in xs and any(t in ("1", "10", "100") for t in xs), xs
    boxes = page.locator("section[data-group='train'] .chart").evaluate_all(
        "cs => cs.map(c => Math.round(c.getBoundingClientRect().width))"
    )
    assert len(boxes) == 2
    save_view(page, "log-x-three-per-row")
    open_ready(page, f"{base}/?project=polish&plots_per_row=1")
    widths = page.locator(".chart").evaluate_all("cs => cs.map(c => c.getBoundingClientRect().width)")
    assert min(widths) > 0.9 * page.locator("#charts").bounding_box()["width"]
    page.select_option("#plots-per-row", "2")
    page.wait_for_selector(READY)
    assert "plots_per_row=2" in page.url


def test_group_by_a_config_key(served: Any, page: Any) -> None:
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&group_by=opt")
    loss = chart(page, "train/loss")
    labels = loss.locator(".legend-item").all_inner_texts()
    assert labels == ["opt: adam", "opt: sgd"], labels
    colours = loss.locator(".legend-item .swatch").evaluate_all("s => s.map(n => n.style.background)")
    assert len(set(colours)) == 2
    loss.locator(".legend-item", has_text="opt: sgd").click()
    assert loss.get_attribute("data-visible") == "5", "the sgd runs hidden, the 5 adam runs shown"
    save_view(page, "group-by-opt")
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&group_by=opt&aggregate=group")
    assert loss.get_attribute("data-bands") == "2" and loss.get_attribute("data-lines") == "2"
    assert "group_by=opt" in page.url
    save_view(page, "group-by-opt-mean-band")


# ------------------------------------------------------------------------------------------------ part 4


def test_trackio_url_parameters(served: Any, page: Any) -> None:
    """trackio 0.43's parameters, read with its meanings, and its page paths."""
    base, _, ids = served
    url = (
        f"{base}/?selected_project=polish&run_ids={ids['run-00']},{ids['run-01']}&x_axis=relative"
        "&metrics=train/loss&accordion=hidden&plots_per_row=auto&sidebar=collapsed"
    )
    open_ready(page, url)
    loss = chart(page, "train/loss")
    assert page.locator(".chart").count() == 1 and loss.get_attribute("data-series") == "2"
    assert loss.get_attribute("data-xaxis") == "relative"
    assert page.locator("section.section > h3").count() == 0, "accordion=hidden: no section headers"
    # trackio reads a `metrics` value that is not plain names as a pattern.
    open_ready(page, f"{base}/?project=polish&metrics=train/(loss|acc)$")
    assert sorted(page.locator(".chart").evaluate_all("cs => cs.map(c => c.dataset.key)")) == [
        "train/acc",
        "train/loss",
    ]
    open_ready(page, f"{base}/runs?project=polish")
    page.wait_for_selector("#runs-table .row[data-run]")
    assert page.evaluate("document.body.dataset.view") == "runs"
    open_ready(page, f"{base}/?project=polish&x-axis=train/acc&metrics=train/loss")
    assert chart(page, "train/loss").get_attribute("data-xaxis") == "train/acc"


# ------------------------------------------------------------------------------------------------ part 5


def test_titles_short_within_their_section_full_key_on_hover(served: Any, page: Any) -> None:
    base, _, _ = served
    open_ready(page, f"{base}/?project=polish")
    title = chart(page, "train/loss").locator("h4")
    assert title.locator(".title-text").inner_text() == "loss" and title.get_attribute("title") == "train/loss"
    save_view(page, "charts")


def _lab(colour: str) -> tuple[float, float, float]:
    """CIELAB of an sRGB hex colour (D65)."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_twenty_distinct_colours_stable_across_pages(served: Any, page: Any) -> None:
    import itertools
    import math

    base, _, ids = served
    page.goto(base + "/")
    palette = page.evaluate("async () => (await import('/static/util.js')).PALETTE")
    assert len(set(palette)) == 20
    closest = min(math.dist(_lab(a), _lab(b)) for a, b in itertools.combinations(palette, 2))
    assert closest > 20, f"two of the 20 colours are only {closest:.1f} apart (CIELAB ΔE76)"
    open_ready(page, f"{base}/?project=polish&metrics=train/loss&runs={ids['run-04']}")
    on_chart = chart(page, "train/loss").locator(".legend-item .swatch").first.evaluate("n => n.style.background")
    open_ready(page, f"{base}/?project=polish&view=runs")
    in_table = page.locator(f"#runs-table .row[data-run='{ids['run-04']}'] .swatch").evaluate("n => n.style.background")
    assert on_chart == in_table
    save_view(page, "runs-table")


def test_screenshots_of_the_other_views(served: Any, page: Any) -> None:
    """Every view once, for looking at (projects, config diff, system, alerts)."""
    base, _, ids = served
    open_ready(page, base + "/")
    save_view(page, "projects")
    open_ready(page, f"{base}/?project=polish&view=diff&runs={ids['run-00']},{ids['run-01']}")
    save_view(page, "config-diff")
    open_ready(page, f"{base}/?project=polish&view=system")
    save_view(page, "system")
    open_ready(page, f"{base}/?project=polish&view=alerts")
    save_view(page, "alerts")
    open_ready(page, f"{base}/?project=polish&metrics=train/loss,train/acc&smoothing=20&sidebar=hidden&navbar=hidden")
    save_view(page, "embed-smoothed")
