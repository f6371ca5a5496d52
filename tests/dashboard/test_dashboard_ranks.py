"""Issue 19 part 6, the rank view: a run logged by three ranks drawn as rank 0, as the mean over a min-max band, or
as every rank, switched on the charts page and kept in the URL; ``/api/chart?ranks=`` answers each exactly.

Three real processes (RANK=0..2, one job id) log to a real daemon that serves the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from tests.support.browser import READY
from tests.support.daemons import Daemons
from tests.support.dashboard import SERVING, decode_chart, isolated_env
from tests.support.screenshots import save_view
from tests.support.scripts import run_script, spawn_script

WORLD = 3
STEPS = 30

# Each rank joins, waits until every rank has joined (so they share the running run), logs rank*10 + step, ends.
RANK_RUN = """
import os, pathlib, time
import trackio_shim as wandb
rank = int(os.environ["RANK"])
out = pathlib.Path(os.environ["OUT"])
run = wandb.init(project="ddp", name="job", config={"lr": 0.1})
(out / f"joined{rank}").write_text(run.id)
deadline = time.time() + 60
while len(list(out.glob("joined*"))) < WORLD and time.time() < deadline:
    time.sleep(0.05)
for step in range(STEPS):
    wandb.log({"loss": rank * 10.0 + step}, step=step)
wandb.finish()
""".replace("WORLD", str(WORLD)).replace("STEPS", str(STEPS))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(dashboard base URL, the multi-rank run's id)."""
    tmp = tmp_path_factory.mktemp("ranks")
    env = isolated_env(tmp / "home", **SERVING)
    out = tmp / "out"
    out.mkdir()
    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon.log").start()
        status = daemon.status()
        assert status is not None and status["dashboard"]
        job = {"WORLD_SIZE": str(WORLD), "TRACKIOD_JOB_ID": "job-1", "OUT": str(out)}
        procs = [spawn_script(RANK_RUN, {**env, **job, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(WORLD)]
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
        # One run, under the id rank 0 printed (a rank that joined before rank 0 saw the id the run had then:
        # docs/ranks.md, the run identity rule).
        base = status["dashboard"].rstrip("/")
        body = httpx.get(f"{base}/api/runs", params={"project": "ddp"}).json()
        rows = [dict(zip(body["columns"], row)) for row in body["rows"]]
        assert [(row["name"], row["id"]) for row in rows] == [("job", (out / "joined0").read_text())], rows
        ids = {rows[0]["id"]}
        run_script(
            "import trackio_shim as w\nw.init(project='ddp', name='single')\nw.log({'loss': 1.0})\nw.finish()", env
        )
        yield status["dashboard"].rstrip("/"), ids.pop()


def chart_series(base: str, run: str, ranks: str) -> tuple[dict[str, Any], list[Any]]:
    body = httpx.get(
        f"{base}/api/chart", params={"project": "ddp", "key": "loss", "runs": run, "ranks": ranks, "format": "bin"}
    )
    assert body.status_code == 200, body.text
    header, _, ys = decode_chart(body.content)
    return header, ys


def test_chart_api_rank_modes(served: tuple[str, str]) -> None:
    base, run = served
    header, ys = chart_series(base, run, "0")
    assert [s.get("rank") for s in header["series"]] == [None] and list(ys[0]) == [float(s) for s in range(STEPS)]
    header, ys = chart_series(base, run, "all")
    assert [s.get("rank") for s in header["series"]] == [None, 1, 2] and header["series"][0]["ranks"] == WORLD
    for r in range(WORLD):
        assert list(ys[r]) == [r * 10.0 + s for s in range(STEPS)]
    header, ys = chart_series(base, run, "band")
    assert [s.get("rank") for s in header["series"]] == [None, "min", "max"]
    assert list(ys[0]) == [10.0 + s for s in range(STEPS)], "the mean of ranks 0, 1, 2"
    assert list(ys[1]) == [float(s) for s in range(STEPS)] and list(ys[2]) == [20.0 + s for s in range(STEPS)]
    keys = httpx.get(f"{base}/api/keys", params={"project": "ddp", "runs": run}).json()
    assert keys["ranks"] == {run: WORLD}
    bad = httpx.get(f"{base}/api/chart", params={"project": "ddp", "key": "loss", "runs": run, "ranks": "some"})
    assert bad.status_code == 400 and "ranks must be one of 0, all, band" in bad.json()["error"]


@pytest.mark.browser
def test_rank_switch_on_the_charts_page(page: Any, served: tuple[str, str]) -> None:
    base, run = served
    page.goto(f"{base}/?project=ddp&runs={run}&live=0")
    page.wait_for_selector(READY)
    chart = page.locator(".chart[data-key='loss']")
    assert chart.get_attribute("data-bands") == "0" and chart.get_attribute("data-lines") == "1"
    page.locator("#ranks").select_option("band")
    page.wait_for_function("() => new URLSearchParams(location.search).get('ranks') === 'band'")
    page.wait_for_selector(f"{READY} .chart[data-key='loss'][data-bands='1']")
    save_view(page, "ranks-band")
    page.locator("#ranks").select_option("all")
    page.wait_for_selector(f"{READY} .chart[data-key='loss'][data-ranks='2']")
    assert chart.get_attribute("data-lines") == "3" and chart.get_attribute("data-bands") == "0"
    save_view(page, "ranks-all")
    page.reload()
    page.wait_for_selector(READY)
    assert page.locator("#ranks").input_value() == "all", "the rank view is kept in the URL"
    # A one-process run has no rank switch.
    single = httpx.get(f"{base}/api/runs", params={"project": "ddp"}).json()["rows"][0][0]
    page.goto(f"{base}/?project=ddp&runs={single}&live=0")
    page.wait_for_selector(READY)
    assert page.locator("#ranks").count() == 0
