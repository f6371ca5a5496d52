"""The system panel and the run page's energy, media, alerts and artifacts in headless Chromium.

A real daemon serves the dashboard and stores what a real training script logged (tests/support/dashboard.py
RICH_RUN). NVML is FAKED (no GPU here): the daemon samples two scripted GPUs (``TRACKIOD_NVML=fake:...``,
trackiod/testing/fake_nvml.py); everything else is real. The daemon is restarted once after logging, because node
series reach the database in chunks and a stop flushes them. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import READY, shot
from tests.support.daemons import Daemons
from tests.support.dashboard import SERVING, fake_nvml_env, isolated_env, store_rich_run

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(dashboard base URL, run id) of a daemon serving the store RICH_RUN filled."""
    tmp = tmp_path_factory.mktemp("browser-rich")
    env = fake_nvml_env(isolated_env(tmp / "home", **SERVING), tmp)
    run_id = store_rich_run(env, tmp)
    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon2.log").start()
        status = daemon.status()
        assert status is not None and status["dashboard"]
        yield status["dashboard"].rstrip("/"), run_id


def test_system_panel_draws_gpu_cpu_memory_and_energy(rich: Any, page: Any) -> None:
    base, run_id = rich
    page.goto(f"{base}/?project=rich&view=system&runs={run_id}")
    page.wait_for_selector(READY)
    power = page.locator(".system-chart[data-key='gpu.0.power_w']")
    assert power.count() == 1 and power.locator("canvas").count() == 1
    sections = page.locator("section[data-group]").evaluate_all("s => s.map(x => x.dataset.group)")
    assert sections[:3] == ["Energy", "GPU power", "GPU utilisation"] and "CPU" in sections and "Memory" in sections
    assert page.locator(".system-chart[data-key='process.rss_bytes']").count() == 1
    assert page.locator("#energy-table tr[data-run]").count() == 1
    assert "Fake A100" in page.locator("#energy-table").inner_text()
    # The chart's canvas has the run's colour drawn on it (uPlot draws lines on a canvas).
    painted = power.locator("canvas").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 120) n++; return n; }"
    )
    assert painted > 50
    shot(page, "system-panel")


def test_run_page_shows_energy_image_table_histogram_html_array_alert_artifacts(rich: Any, page: Any) -> None:
    base, run_id = rich
    page.goto(f"{base}/?project=rich&view=run&run={run_id}")
    page.wait_for_selector(READY)
    page.wait_for_selector(".media-card[data-kind='histogram'][data-ready='1']")
    main = page.locator("#main")
    energy = page.locator("#energy").inner_text()
    assert "kWh" in energy and "GPU hours" in energy and "Fake A100" in energy
    # An image, loaded from the media route.
    image = page.locator(".media-card[data-key='samples'] img.media-image")
    page.wait_for_function(
        "() => { const i = document.querySelector('.media-card[data-key=samples] img'); "
        "return i && i.complete && i.naturalWidth === 32; }"
    )
    assert image.get_attribute("data-step") == "30"
    page.locator(".media-card[data-key='samples'] .step-slider").fill("0")
    assert image.get_attribute("data-step") == "0"
    # A table, paginated.
    table = page.locator(".media-card[data-key='predictions']")
    assert "rows 1\u201325 of 120" in table.inner_text() and table.locator("tr").count() == 26
    table.locator("button.next").click()
    page.wait_for_function(
        "() => document.querySelector('.media-card[data-key=predictions] .page-info')"
        ".textContent.startsWith('rows 26\u201350')"
    )
    assert "item-26" in table.inner_text()
    # A histogram heatmap over steps, with a painted canvas.
    hist = page.locator(".media-card[data-key='weights']")
    assert hist.get_attribute("data-steps") == "10"
    painted = hist.locator("canvas.heatmap").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) n++; return n; }"
    )
    assert painted > 1000
    # HTML in a sandboxed frame; an array's summary.
    frame = page.locator(".media-card[data-key='report'] iframe")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    assert page.frame_locator(".media-card[data-key='report'] iframe").locator("h1#x").inner_text() == "Report"
    assert "float32" in page.locator(".media-card[data-key='embedding']").inner_text()
    # The alert, the artifact it produced and used, and the context series as a dashed line.
    assert "loss spike" in page.locator("#alerts-table").inner_text()
    artifacts = page.locator("#artifacts-table").inner_text()
    assert "rich/toy-data:v0" in artifacts and "produced" in artifacts and "used" in artifacts
    assert page.locator(".chart[data-key='loss']").get_attribute("data-contexts") == "1"
    assert "{subset: val}" in main.inner_text()
    shot(page, "run-page-media")
    page.locator(".media-card[data-key='weights']").scroll_into_view_if_needed()
    shot(page, "run-page-histogram")


def test_alerts_tab_lists_the_projects_alerts(rich: Any, page: Any) -> None:
    base, run_id = rich
    page.goto(f"{base}/?project=rich&view=alerts")
    page.wait_for_selector("#alerts-table")
    rows = page.locator("#alerts-table tr[data-level='WARN']")
    assert rows.count() == 1 and "loss went up at step 12" in rows.inner_text()
    assert rows.locator("a").get_attribute("href").endswith(f"view=run&run={run_id}")
    shot(page, "alerts")
