"""The run page in headless Chromium shows a gallery, a video and an audio player and wandb.plot charts, for the
store a real daemon wrote from a real training script (tests/support/media_values.py). Screenshots go to
test-output/screenshots/."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import READY, shot
from tests.support.daemons import Daemons
from tests.support.dashboard import SERVING, isolated_env
from tests.support.media_values import store_media_values_run

pytestmark = pytest.mark.browser

# Pixels of a canvas that are drawn and coloured (not the white background, not the grey axes).
PAINTED = (
    "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
    " for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && Math.max(d[i], d[i + 1], d[i + 2])"
    " - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++; return n; }"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(dashboard base URL, run id) of a daemon serving the store MEDIA_VALUES_RUN filled."""
    tmp = tmp_path_factory.mktemp("browser-values")
    env = isolated_env(tmp / "home", **SERVING)
    run_id = store_media_values_run(env, tmp)
    with Daemons() as daemons:
        status = daemons(env, tmp / "daemon2.log").start().status()
        assert status is not None and status["dashboard"]
        yield status["dashboard"].rstrip("/"), run_id


def test_run_page_shows_a_gallery_players_and_wandb_plot_charts(served: Any, page: Any) -> None:
    base, run_id = served
    page.goto(f"{base}/?project=values&view=run&run={run_id}")
    page.wait_for_selector(READY)
    page.wait_for_selector(".media-card[data-kind='plot'][data-ready='1']")
    # The gallery: three images side by side at the latest step, loaded from the media route.
    gallery = page.locator(".media-card[data-key='gallery']")
    gallery.locator("[data-ready='1'], .media-gallery").first.wait_for()
    page.wait_for_function(
        "() => { const i = [...document.querySelectorAll('.media-card[data-key=gallery] .gallery-item img')];"
        " return i.length === 3 && i.every((x) => x.complete && x.naturalWidth === 8); }"
    )
    assert gallery.locator(".media-gallery").get_attribute("data-step") == "1"
    assert "tile 2" in gallery.inner_text()
    # A video player that has loaded the daemon's webm, and an audio player with the WAV.
    page.wait_for_function(
        "() => { const v = document.querySelector('.media-card[data-key=clip] video');"
        " return v && v.readyState >= 1 && v.videoWidth === 32; }"
    )
    page.wait_for_function(
        "() => { const a = document.querySelector('.media-card[data-key=tone] audio');"
        " return a && a.readyState >= 1 && Math.abs(a.duration - 0.5) < 0.01; }"
    )
    assert page.locator(".media-card[data-key='cloud'] a.media-download").count() == 1
    # wandb.plot charts drawn on their canvases, each by its preset.
    for key, chart in (
        ("chart/line", "line"),
        ("chart/bar", "bar"),
        ("chart/confusion", "confusion_matrix"),
        ("chart/roc", "curve"),
    ):
        canvas = page.locator(f".media-card[data-key='{key}'] canvas.plot-chart")
        assert canvas.get_attribute("data-chart") == chart
        assert canvas.evaluate(PAINTED) > 100, key
    assert "a parabola" in page.locator(".media-card[data-key='chart/line']").inner_text()
    # The plotly figure, without plotly.js bundled: its trace drawn plainly, with the JSON to download.
    plotly = page.locator(".media-card[data-key='plotly']")
    assert "plotly.js is not bundled" in plotly.inner_text() and plotly.locator("canvas").evaluate(PAINTED) > 50
    if importlib.util.find_spec("plotly") is not None:  # a real figure's typed arrays, decoded in the page
        real = page.locator(".media-card[data-key='plotly/real']")
        assert "1 x/y trace(s) drawn" in real.inner_text() and real.locator("canvas").evaluate(PAINTED) > 20
    page.locator(".media-card[data-key='gallery']").scroll_into_view_if_needed()
    shot(page, "run-page-media-values")
