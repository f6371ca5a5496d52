"""Issue 15 part 2: rename, tags, notes and delete from the dashboard, written by the daemon (the single writer);
and the alerts panel's level filters.

End to end: a real daemon serves the dashboard, a real script logs runs, the page edits one, and ``Api()`` in a
fresh process reads the edit back. The refusals: read-only off loopback without a user's token, no daemon, a body
that is not JSON, bad input (answered by the daemon), deleting a running run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.support.browser import READY
from tests.support.daemons import DaemonProcess, Daemons, wait_for
from tests.support.dashboard import SERVING, client, fill, isolated_env, settings_for
from tests.support.screenshots import save_view
from tests.support.scripts import run_script, spawn_script

LOG = """
import trackio_shim as wandb
for i in range(2):
    wandb.init(project="edits", name=f"before-{i}", tags=["old"], config={"i": i})
    wandb.log({"loss": 1.0 + i})
    if i == 0:
        for n, level in enumerate(["INFO", "WARN", "WARN", "ERROR"]):
            wandb.alert(title=f"alert {n}", text=f"a {level.lower()} alert", level=level)
    wandb.finish()
"""

READ_BACK = """
import json, trackio_shim as wandb
print(json.dumps([{"id": r.id, "name": r.name, "tags": r.tags, "notes": r.notes} for r in wandb.Api().runs("edits")]))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], DaemonProcess]]:
    tmp = tmp_path_factory.mktemp("writes")
    env = isolated_env(tmp / "home", **SERVING)
    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon.log").start()
        status = daemon.status()
        assert status is not None and status["dashboard"]
        run_script(LOG, env)
        yield status["dashboard"].rstrip("/"), env, daemon


def read_back(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    runs = json.loads(run_script(READ_BACK, env).stdout.strip().splitlines()[-1])
    return {r["name"]: r for r in runs}


@pytest.mark.browser
def test_rename_tags_notes_and_delete_through_the_page(page: Any, served: tuple[str, dict[str, str], Any]) -> None:
    base, env, _ = served
    run_id = read_back(env)["before-0"]["id"]
    page.goto(f"{base}/?project=edits&view=run&run={run_id}&live=0")
    page.wait_for_selector(READY)
    page.locator("details.edit summary").click()
    page.locator("#edit-name").fill("after-0")
    page.locator("#edit-tags").fill("new, best ,new")
    page.locator("#edit-notes").fill("lr too high\nsecond line")
    page.locator("#edit-save").click()
    page.wait_for_function(
        "() => document.querySelector('#edit-message')?.textContent.startsWith('saved')"
        " || document.querySelector('h2')?.textContent.includes('after-0')"
    )
    page.wait_for_selector(f"{READY} #run-list .row[data-run='{run_id}']:has-text('after-0')")
    stored = read_back(env)["after-0"]
    assert stored == {"id": run_id, "name": "after-0", "tags": ["new", "best"], "notes": "lr too high\nsecond line"}
    assert "after-0" in page.locator("h2").inner_text()
    save_view(page, "run-edited")
    # Delete the other run: confirmed in the browser's dialog, gone from the store and the page.
    other = read_back(env)["before-1"]["id"]
    page.goto(f"{base}/?project=edits&view=run&run={other}&live=0")
    page.wait_for_selector(READY)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("details.edit summary").click()
    page.locator("#edit-delete").click()
    page.wait_for_selector(f"{READY}[data-view='runs']")
    assert "before-1" not in read_back(env)
    assert page.locator(f"#run-list .row[data-run='{other}']").count() == 0


def test_daemon_checks_edits_and_refuses_deleting_a_running_run(
    served: tuple[str, dict[str, str], Any], tmp_path: Path
) -> None:
    base, env, _ = served
    run_id = next(iter(read_back(env).values()))["id"]
    post = lambda path, body: httpx.post(f"{base}{path}", json=body)  # noqa: E731
    bad = post("/api/run/edit", {"project": "edits", "run": run_id, "name": ""})
    assert bad.status_code == 400 and "name must be 1 to 128 characters" in bad.json()["error"]
    tags = post("/api/run/edit", {"project": "edits", "run": run_id, "tags": "x"})
    assert tags.status_code == 400 and "tags must be a list" in tags.json()["error"]
    missing = post("/api/run/edit", {"project": "edits", "run": "nope", "notes": "x"})
    assert missing.status_code == 400 and "no run 'nope'" in missing.json()["error"]
    form = httpx.post(f"{base}/api/run/edit", data={"project": "edits", "run": run_id, "name": "x"})
    assert form.status_code == 415, "a cross-site form post is refused"
    go = tmp_path / "go"
    script = (
        "import os, pathlib, time, trackio_shim as w\n"
        "r = w.init(project='edits', name='live')\n"
        "print(r.id, flush=True)\n"
        "deadline = time.time() + 60\n"
        "while not pathlib.Path(os.environ['GO']).exists() and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "w.finish()\n"
    )
    proc = spawn_script(script, {**env, "GO": str(go)})
    try:
        assert proc.stdout is not None
        live = proc.stdout.readline().strip()
        wait_for(lambda: live in {r["id"] for r in read_back(env).values()}, timeout=30, what="the live run stored")
        refused = post("/api/run/delete", {"project": "edits", "run": live})
        assert refused.status_code == 400 and "is running" in refused.json()["error"]
    finally:
        go.write_text("")
        proc.wait(timeout=60)


MEDIA = """
import numpy as np, trackio_shim as wandb
for i in range(2):
    run = wandb.init(project="edits-media", name=f"media-{i}")
    pixels = np.full((8, 8, 3), 40 * i, dtype=np.uint8)
    run.log({"img": wandb.Image(pixels), "tbl": wandb.Table(columns=["pic"], data=[[wandb.Image(pixels + 1)]])})
    print(run.id, flush=True)
    run.finish()
"""


def test_deleting_a_run_deletes_its_media_files(served: tuple[str, dict[str, str], Any]) -> None:
    """Issue 15: a run deleted from the dashboard left its images (and a table's image cells) on disk."""
    base, env, _ = served
    gone, kept = run_script(MEDIA, env).stdout.split()[-2:]
    media = Path(env["TRACKIOD_HOME"]) / "media"

    def files(run: str) -> list[Path]:
        out = []
        for key in ("img", "tbl"):
            answer = httpx.get(f"{base}/api/media/values", params={"project": "edits-media", "run": run, "key": key})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            if key == "img":
                out.append(media / body["values"][0]["path"])
            else:
                out.append(media / body["rows"][0][0]["path"])  # the table's image cell: a file of its own
        return out

    doomed, survivors = files(gone), files(kept)
    tables = [p for p in media.rglob("*table.json")]
    assert all(p.is_file() for p in [*doomed, *survivors]) and len(tables) == 2
    answer = httpx.post(f"{base}/api/run/delete", json={"project": "edits-media", "run": gone})
    assert answer.status_code == 200, answer.text
    assert not any(p.exists() for p in doomed), "the deleted run's image and table cell files are gone"
    assert sum(p.exists() for p in tables) == 1, "its table's own file too"
    assert not doomed[0].parent.exists(), "and the folders they leave empty"
    assert all(p.is_file() for p in survivors), "the other run's files stay"


def test_read_only_and_no_daemon_refusals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fill(home, project="p", runs=1)
    body = {"project": "p", "run": "run0", "name": "x"}
    with client(settings_for(home)) as http:
        answer = http.post("/api/run/edit", json=body)
        assert answer.status_code == 503 and "trackiod start" in answer.json()["error"]
    from starlette.testclient import TestClient

    from trackiod.dashboard.app import create_app

    app = create_app(settings_for(home), "generated", "c", control=lambda what, args: (True, {}), writable=False)
    with TestClient(app, base_url="http://10.0.0.5:7860") as http:
        answer = http.post("/api/run/edit", json=body, headers={"Authorization": "Bearer generated"})
        assert answer.status_code == 403 and "read-only" in answer.json()["error"]
        assert (
            http.get("/api/runs", params={"project": "p"}, headers={"Authorization": "Bearer generated"}).status_code
            == 200
        )


@pytest.mark.browser
def test_alerts_panel_level_filters(page: Any, served: tuple[str, dict[str, str], Any]) -> None:
    base = served[0]
    wait_for(
        lambda: (
            httpx.get(f"{base}/api/alerts", params={"project": "edits"}).json()["levels"]
            == {"INFO": 1, "WARN": 2, "ERROR": 1}
        ),
        timeout=30,
        what="the four alerts stored",
    )
    page.goto(f"{base}/?project=edits&view=alerts&live=0")
    page.wait_for_selector(READY)
    levels = lambda: page.locator("#alerts-table tr[data-level]").evaluate_all("rs => rs.map(r => r.dataset.level)")  # noqa: E731
    assert sorted(levels()) == ["ERROR", "INFO", "WARN", "WARN"]
    assert page.locator(".level-filter[data-level='WARN']").inner_text() == "WARN 2"
    page.locator(".level-filter[data-level='INFO']").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('levels') === 'WARN,ERROR'")
    page.wait_for_selector(READY)
    assert sorted(levels()) == ["ERROR", "WARN", "WARN"]
    page.locator(".level-filter[data-level='WARN']").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('levels') === 'ERROR'")
    page.wait_for_selector(READY)
    assert levels() == ["ERROR"]
    save_view(page, "alerts-filtered")
    page.reload()
    page.wait_for_selector(READY)
    assert levels() == ["ERROR"], "the filter is kept in the URL"
    only_warn = httpx.get(f"{base}/api/alerts", params={"project": "edits", "level": "warn"}).json()
    assert [a["level"] for a in only_warn["alerts"]] == ["WARN", "WARN"]


def test_delete_covers_every_table_of_a_run(tmp_path: Path) -> None:
    """Deleting a run removes its rows from every table with a run_id: a table added later must join RUN_TABLES."""
    from trackiod.ingest.edits import RUN_TABLES
    from trackiod.store.writer import Store

    store = Store(tmp_path / "t.db")
    try:
        tables = {
            name
            for (name,) in store.conn.execute(
                "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c "
                "WHERE m.type='table' AND c.name='run_id' AND m.name != 'runs'"
            )
        }
    finally:
        store.close()
    assert tables == set(RUN_TABLES)


def test_deleting_a_run_keeps_a_media_file_another_run_names(tmp_path: Path) -> None:
    """A pulled run keeps the paths of the machine it came from, so two runs' rows can name one file: deleting
    one run must not take the other's file."""
    from trackiod.ingest.edits import delete_run
    from trackiod.ingest.media import MediaWriter
    from trackiod.store.writer import Store

    store = Store(tmp_path / "t.db")
    media = MediaWriter(store, tmp_path / "media")
    shared, own = tmp_path / "media" / "1" / "k" / "shared.png", tmp_path / "media" / "1" / "k" / "own.png"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"x")
    own.write_bytes(b"y")
    try:
        with store.conn:
            ids = [int(store.create_run("p", f"r{i}", f"r{i}", {}, {}, "h", 1)["id"]) for i in range(2)]
            for run_id, path in ((ids[0], "1/k/shared.png"), (ids[1], "1/k/shared.png"), (ids[0], "1/k/own.png")):
                store.conn.execute(
                    "INSERT INTO media(run_id, key_id, step, ts, kind, meta, path) "
                    "VALUES (?, ?, ?, 0, 'image', '{}', ?)",
                    (run_id, store.key_id("k"), 0 if path.endswith("shared.png") else 1, path),
                )
            store.update_run(ids[0], state="finished")
        delete_run(store, media, "p", "r0")
    finally:
        store.close()
    assert not own.exists() and shared.is_file()


def _show(env: dict[str, str], host: str) -> tuple[Any, str]:
    """``trackio_shim.show()`` in a fresh process; returns it and the URL it printed."""
    proc = spawn_script(
        f"import trackio_shim\ntrackio_shim.show(project='edits-show', host={host!r}, port=0, open_browser=False)\n",
        env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("trackiod dashboard: "), line + (proc.stderr.read() if proc.stderr else "")
    return proc, line.split(": ", 1)[1].strip()


def test_shim_show_edits_through_the_daemon_and_is_read_only_off_loopback(
    served: tuple[str, dict[str, str], Any],
) -> None:
    """Issue 15: ``trackio_shim.show()`` served without a way to the daemon, so every edit answered 503."""
    _, env, _ = served
    run = run_script(
        "import trackio_shim as w\nr = w.init(project='edits-show', name='shown')\nw.log({'x': 1})\nprint(r.id)\n"
        "w.finish()\n",
        env,
    ).stdout.split()[-1]
    proc, url = _show(env, "127.0.0.1")
    try:
        base = url.split("/?")[0]
        wait_for(lambda: _answers(base), timeout=30, what="show() to serve")
        answer = httpx.post(f"{base}/api/run/edit", json={"project": "edits-show", "run": run, "name": "renamed"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["name"] == "renamed"
        rows = httpx.get(f"{base}/api/runs", params={"project": "edits-show"}).json()["rows"]
        assert [r[1] for r in rows] == ["renamed"], "written by the daemon, read back by show()'s server"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc, url = _show(env, "0.0.0.0")
    try:
        token = url.split("token=")[1].split("&")[0]
        base = f"http://127.0.0.1:{url.split('://')[1].split('/')[0].rsplit(':', 1)[1]}"
        wait_for(lambda: _answers(base, token), timeout=30, what="show() to serve off loopback")
        answer = httpx.post(
            f"{base}/api/run/edit",
            json={"project": "edits-show", "run": run, "name": "again"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 403 and "read-only" in answer.json()["error"], answer.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(base: str, token: str = "") -> bool:
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{base}/api/info", headers=headers).status_code == 200
    except httpx.TransportError:
        return False
