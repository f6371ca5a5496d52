"""Issue 15 part 2: the cross-run media gallery, filtered by run, key and step (``/api/gallery`` and the page).

A real daemon serves the dashboard; a real script logs images with wandb.Image in two runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from tests.support.browser import READY
from tests.support.daemons import Daemons, wait_for
from tests.support.dashboard import SERVING, isolated_env
from tests.support.screenshots import save_view
from tests.support.scripts import run_script

LOG = """
import numpy as np
import trackio_shim as wandb
for i in range(2):
    run = wandb.init(project="gallery", name=f"gen-{i}")
    for step in (0, 5, 10):
        pixels = np.full((16, 16, 3), (60 * step + 80 * i) % 256, dtype=np.uint8)
        pixels[:, : 4 + step] = (200, 40 * i, 90)
        run.log({"samples": wandb.Image(pixels, caption=f"run {i} step {step}")}, step=step)
    run.log({"masks": wandb.Image(np.eye(16, dtype=np.uint8) * 255)}, step=11)
    run.log({"loss": 1.0}, step=12)
    wandb.finish()
print(",".join(r.id for r in wandb.Api().runs("gallery")))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    tmp = tmp_path_factory.mktemp("gallery")
    env = isolated_env(tmp / "home", **SERVING)
    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon.log").start()
        status = daemon.status()
        assert status is not None and status["dashboard"]
        ids = run_script(LOG, env).stdout.strip().splitlines()[-1].split(",")
        base = status["dashboard"].rstrip("/")
        wait_for(
            lambda: httpx.get(f"{base}/api/gallery", params={"project": "gallery"}).json()["total"] == 8,
            timeout=30,
            what="the 8 images stored",
        )
        yield base, ids


def test_gallery_api_filters(served: tuple[str, list[str]]) -> None:
    base, ids = served
    get = lambda **params: httpx.get(f"{base}/api/gallery", params={"project": "gallery", **params}).json()  # noqa: E731
    everything = get()
    assert everything["keys"] == [{"key": "masks", "count": 2}, {"key": "samples", "count": 6}]
    assert everything["steps"] == [0, 11] and [i["step"] for i in everything["items"]] == [11, 11, 10, 10, 5, 5, 0, 0]
    one_run = get(runs=ids[0])
    assert one_run["total"] == 4 and {i["run"] for i in one_run["items"]} == {ids[0]}
    samples = get(keys="samples", step_min=5, step_max=10)
    assert samples["total"] == 4 and {(i["key"], i["step"]) for i in samples["items"]} == {
        ("samples", 5),
        ("samples", 10),
    }
    assert all(i["caption"].endswith(f"step {i['step']}") for i in samples["items"])
    page = get(limit=3, offset=3)
    assert len(page["items"]) == 3 and page["total"] == 8
    image = httpx.get(f"{base}/media/{everything['items'][0]['path']}")
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    assert httpx.get(f"{base}/api/gallery", params={"project": "gallery", "limit": 0}).status_code == 400


@pytest.mark.browser
def test_gallery_page_filters_by_run_key_and_step(page: Any, served: tuple[str, list[str]]) -> None:
    base, ids = served
    page.goto(f"{base}/?project=gallery&view=gallery&live=0")
    page.wait_for_selector(READY)
    items = lambda: page.locator(".gallery-item").evaluate_all(  # noqa: E731
        "fs => fs.map(f => [f.dataset.run, f.dataset.key, Number(f.dataset.step)])"
    )
    assert len(items()) == 8, "the default selection (the newest runs) holds both runs"
    page.wait_for_function(
        "() => [...document.querySelectorAll('.gallery-item img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    save_view(page, "gallery")
    page.locator("#gallery-key").select_option("samples")
    page.wait_for_selector(f"{READY} .gallery-item")
    page.wait_for_function("() => document.querySelectorAll('.gallery-item').length === 6")
    page.locator("#gallery-step-min").fill("5")
    page.locator("#gallery-step-min").dispatch_event("change")
    page.wait_for_function("() => document.querySelectorAll('.gallery-item').length === 4")
    assert {(k, s) for _, k, s in items()} == {("samples", 5), ("samples", 10)}
    # One run selected in the sidebar: only its media; the filters are kept in the URL.
    page.goto(f"{base}/?project=gallery&view=gallery&live=0&runs={ids[1]}&gallery_keys=samples&step_min=5")
    page.wait_for_selector(READY)
    assert sorted(map(tuple, items())) == sorted([(ids[1], "samples", 5), (ids[1], "samples", 10)])
    page.locator("#gallery-runs").select_option("all")
    page.wait_for_function("() => document.querySelectorAll('.gallery-item').length === 4")
