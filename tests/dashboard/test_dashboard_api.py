"""The dashboard's JSON API over a real SQLite store, through an HTTP client (Starlette's TestClient).

The store is written by the daemon's own writer (tests/support/dashboard.fill) or, in the last test, by a real
daemon fed by the shim; the app reads it through query-only connections.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.dashboard import client, decode_chart, fill, settings_for


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_empty_home_answers_with_empty_lists(home: Path) -> None:
    c = client(settings_for(home))
    assert c.get("/api/projects").json() == {"projects": []}
    assert c.get("/api/runs", params={"project": "p"}).json()["rows"] == []
    assert c.get("/").status_code == 200
    assert not (home / "trackiod.db").exists(), "the dashboard never creates the database"


def test_projects_and_runs_table(home: Path) -> None:
    ids = fill(home, runs=3, config={"weird": float("nan")})
    c = client(settings_for(home))
    projects = c.get("/api/projects").json()["projects"]
    assert [(p["name"], p["runs"], p["running"]) for p in projects] == [("proj", 3, 0)]
    resp = c.get("/api/runs", params={"project": "proj"})
    assert resp.status_code == 200
    body = json.loads(resp.text)  # strict JSON: no NaN tokens reach the browser
    cols = body["columns"]
    rows = [dict(zip(cols, r)) for r in body["rows"]]
    assert [r["id"] for r in rows] == list(reversed(ids)), "newest first"
    first = rows[-1]
    assert first["state"] == "finished" and first["group"] == "g" and first["tags"] == ["t"]
    assert first["config"]["model"] == {"depth": 4} and first["config"]["weird"] == "NaN"
    assert first["summary"] == {"train/loss": 1}
    assert first["last_step"] == 999
    later = c.get("/api/runs", params={"project": "proj", "updated_after": body["now"] + 10}).json()
    assert later["rows"] == [], "updated_after returns only runs changed since"


def test_runs_table_built_by_sqlite_matches_the_python_path(home: Path) -> None:
    """Without NaN anywhere SQLite writes the rows; the answer must equal the Python writer's, newest first."""
    from trackiod.dashboard import reads
    from trackiod.read.connection import open_reader

    ids = fill(home, runs=4, config={"nested": {"list": [1, 2.5, "x"]}, "unicode": "é"})
    conn = open_reader(home / "trackiod.db")
    try:
        fast = json.loads(reads.runs_json(conn, "proj"))
        conn.execute("PRAGMA query_only=OFF")  # only to put a NaN token in one config, to force the Python path
        conn.execute("UPDATE runs SET config = '{\"z\": NaN}' WHERE run_key='run0'")
        slow = json.loads(reads.runs_json(conn, "proj"))
    finally:
        conn.close()
    assert [r[0] for r in fast["rows"]] == list(reversed(ids))
    assert fast["rows"][:3] == slow["rows"][:3], "the same rows either way"
    assert slow["rows"][3][13] == {"z": "NaN"}
    assert fast["rows"][0][13]["nested"] == {"list": [1, 2.5, "x"]} and fast["rows"][0][13]["unicode"] == "é"


def test_run_detail_and_missing_run(home: Path) -> None:
    fill(home, runs=1)
    c = client(settings_for(home))
    run = c.get("/api/run", params={"project": "proj", "run": "run0"}).json()
    assert run["id"] == "run0" and run["name"] == "name-0" and run["config"]["lr"] == 0.1
    assert {k["key"] for k in run["keys"]} == {"train/loss", "train/acc"}
    assert run["energy"] is None and run["contexts"] == [] and run["files"] == []
    missing = c.get("/api/run", params={"project": "proj", "run": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_keys_for_selected_runs(home: Path) -> None:
    fill(home, runs=2)
    c = client(settings_for(home))
    keys = c.get("/api/keys", params={"project": "proj", "runs": "run0,run1"}).json()
    assert [(k["key"], k["runs"], k["points"]) for k in keys["keys"]] == [
        ("train/acc", 2, 2000),
        ("train/loss", 2, 2000),
    ]
    by_name = c.get("/api/keys", params={"project": "proj", "runs": "name-1"}).json()
    assert by_name["keys"][0]["runs"] == 1, "runs can be named as trackio links name them"


def test_chart_exact_when_small(home: Path) -> None:
    fill(home, runs=2, points=100)
    c = client(settings_for(home))
    body = c.get("/api/chart", params={"project": "proj", "key": "train/loss", "runs": "run0,run1"}).json()
    assert body["reduced"] is False
    assert body["x"] == list(range(100))
    assert [s["run"] for s in body["series"]] == ["run0", "run1"]
    assert body["series"][1]["y"][10] == pytest.approx(np.sin(10 / 50.0) + 1)
    assert body["series"][0]["last_step"] == 99 and body["series"][0]["points"] == 100


def test_chart_reduced_keeps_every_columns_min_and_max(home: Path) -> None:
    fill(home, runs=1, points=20_000)
    c = client(settings_for(home))
    params = {"project": "proj", "key": "train/loss", "runs": "run0", "width": 100}
    body = c.get("/api/chart", params=params).json()
    assert body["reduced"] is True
    y = np.array(body["series"][0]["y"], dtype=float)
    assert y.size <= 200 and len(body["x"]) == y.size
    full = np.sin(np.arange(20_000) / 50.0)
    assert y.max() == pytest.approx(full.max()) and y.min() == pytest.approx(full.min())
    header, x, ys = decode_chart(c.get("/api/chart", params={**params, "format": "bin"}).content)
    assert header["reduced"] is True and np.allclose(x, body["x"]) and np.allclose(ys[0], y)


def test_chart_after_returns_only_new_points(home: Path) -> None:
    fill(home, runs=2, points=500)
    c = client(settings_for(home))
    params = {"project": "proj", "key": "train/loss", "runs": "run0,run1", "after": "run0:489,run1:499"}
    body = c.get("/api/chart", params=params).json()
    points = {s["run"]: s["points"] for s in body["series"]}
    assert points == {"run0": 10, "run1": 0}
    assert body["x"] == list(range(490, 500))
    assert body["series"][1]["last_step"] == 499, "a run with nothing new keeps its last step"


@pytest.mark.parametrize("xaxis", ["time", "relative", "train/acc"])
def test_chart_x_axes(home: Path, xaxis: str) -> None:
    fill(home, runs=1, points=50)
    c = client(settings_for(home))
    body = c.get("/api/chart", params={"project": "proj", "key": "train/loss", "runs": "run0", "xaxis": xaxis}).json()
    x = np.array(body["x"])
    assert x.size == 50 and bool(np.all(np.diff(x) > 0))
    if xaxis == "relative":
        assert x[0] == pytest.approx(0.0) and x[-1] == pytest.approx(49 * 0.5)
    elif xaxis == "time":
        assert x[0] > 1e9
    else:  # another metric: train/acc = sin(step/50) + 1, so x is that value at each step
        assert x[0] == pytest.approx(1.0)


def test_chart_zoom_range(home: Path) -> None:
    fill(home, runs=1, points=10_000)
    c = client(settings_for(home))
    params = {"project": "proj", "key": "train/loss", "runs": "run0", "xmin": 100, "xmax": 199, "width": 400}
    body = c.get("/api/chart", params=params).json()
    assert body["reduced"] is False and body["x"][0] == 100 and body["x"][-1] == 199


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"key": "k", "runs": "a"}, "'project'"),
        ({"project": "p", "runs": "a"}, "'key'"),
        ({"project": "p", "key": "k", "width": "wide"}, "'width' must be an integer"),
        ({"project": "p", "key": "k", "width": "99999"}, "width must be between"),
        ({"project": "p", "key": "k", "after": "nocolon"}, "RUN:STEP"),
        ({"project": "p", "key": "k", "after": "r:x"}, "integer step"),
        ({"project": "p", "key": "k", "format": "xml"}, "format must be"),
        ({"project": "p", "key": "k", "xmin": "low"}, "'xmin' must be a number"),
    ],
)
def test_bad_parameters_are_named(home: Path, params: dict[str, Any], message: str) -> None:
    fill(home, runs=1, points=10)
    resp = client(settings_for(home)).get("/api/chart", params=params)
    assert resp.status_code == 400
    assert message in resp.json()["error"]


def test_system_media_alerts_artifacts_of_a_run_that_logged_none(home: Path) -> None:
    fill(home, runs=1, points=10)
    c = client(settings_for(home))
    assert c.get("/api/system", params={"project": "proj", "runs": "run0"}).json() == {
        "available": False,
        "width": 800,
        "charts": [],
        "energy": {},
    }
    assert c.get("/api/media", params={"project": "proj", "run": "run0"}).json() == {"available": True, "keys": []}
    assert c.get("/api/alerts", params={"project": "proj"}).json() == {"alerts": [], "levels": {}}
    assert c.get("/api/artifacts", params={"project": "proj", "run": "run0"}).json() == {"produced": [], "used": []}
    features = c.get("/api/info").json()["features"]
    assert features == {"system": True, "media": True, "alerts": True, "artifacts": True, "ranks": True}


def test_reads_what_a_real_daemon_wrote(daemon: Any, shim: Any) -> None:
    """The whole way: shim -> daemon -> SQLite -> dashboard API, with the daemon still running (WAL readers)."""
    run = shim.init(project="live", config={"lr": 0.5})
    shim.define_metric("val/*", step_metric="epoch")
    for step in range(300):
        data = {"loss": 1.0 / (step + 1)}
        if step % 100 == 0:
            data.update({"val/acc": step / 300, "epoch": step // 100})
        shim.log(data)
    shim.finish()
    c = client(daemon.settings())
    keys = c.get("/api/keys", params={"project": "live", "runs": run.id}).json()
    assert keys["step_metrics"] == {"val/acc": "epoch"}
    body = c.get("/api/chart", params={"project": "live", "key": "loss", "runs": run.id}).json()
    assert len(body["x"]) == 300 and body["series"][0]["y"][0] == 1.0
    rows = c.get("/api/runs", params={"project": "live"}).json()["rows"]
    assert rows[0][0] == run.id and rows[0][2] == "finished"


def test_trackio_page_paths_serve_the_page_and_need_the_token(home: Path) -> None:
    """trackio's page paths (/runs, /run, /system, /metrics) open the dashboard, which reads its view from the
    path, so a link made for trackio's dashboard opens the same page; a token still guards them."""
    page = client(settings_for(home)).get("/").text
    for path in ("/runs", "/run", "/system", "/metrics"):
        answer = client(settings_for(home)).get(path, params={"project": "p"})
        assert answer.status_code == 200 and answer.text == page, path
    assert client(settings_for(home), token="tok").get("/runs").status_code == 401
