"""Alerts end to end: a real daemon delivers them to a real HTTP server that each test starts on 127.0.0.1.

Nothing is faked: the webhook is ``http.server`` in a thread, the daemon is a subprocess, and assertions
read the alerts back from SQLite through the read API.
"""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script
from trackiod.attachments.alerts import payload, webhook_format


class Webhook:
    """A local HTTP server recording every POST; ``status`` is the code it answers with."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = status
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append(
                    {"path": self.path, "body": json.loads(body), "type": self.headers["Content-Type"]}
                )
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


def alerts_of(shim: Any, project: str) -> list[dict[str, Any]]:
    return list(reversed(shim.Api().alerts(project)))


def test_alert_is_stored_printed_once_and_posted_as_json(
    stopped_daemon: DaemonProcess, shim: Any, webhook: Webhook, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped_daemon.start(TRACKIOD_WEBHOOK_URL=webhook.url)
    run = shim.init(project="al", id="json1")
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1)})
    shim.alert("loss is low", "loss went below 0.3", level=shim.AlertLevel.WARN)
    wait_for(lambda: webhook.received, what="the webhook POST")
    body = webhook.received[0]["body"]
    assert webhook.received[0]["type"] == "application/json"
    assert {k: body[k] for k in ("title", "text", "level", "project", "run_id", "step")} == {
        "title": "loss is low",
        "text": "loss went below 0.3",
        "level": "WARN",
        "project": "al",
        "run_id": "json1",
        "step": 4,
    }
    stored = wait_for(lambda: [a for a in alerts_of(shim, "al") if a["status"] == "delivered"])
    assert stored[0]["attempts"] == 1 and stored[0]["step"] == 4
    assert capsys.readouterr().err.count("ALERT [WARN] loss is low: loss went below 0.3") == 1
    assert len(webhook.received) == 1


def test_delivery_retries_after_a_refused_connection(stopped_daemon: DaemonProcess, shim: Any) -> None:
    with socket.socket() as probe:  # a port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    stopped_daemon.start(
        TRACKIOD_WEBHOOK_URL=url, TRACKIOD_WEBHOOK_BACKOFF_S="0.3", TRACKIOD_MAINTENANCE_INTERVAL_S="0.2"
    )
    shim.init(project="al", id="retry1")
    shim.alert("diverged", "loss is NaN", level="ERROR")
    failed_once = wait_for(lambda: [a for a in alerts_of(shim, "al") if a["attempts"] >= 1], timeout=15)
    assert failed_once[0]["status"] == "pending"
    assert "refused" in failed_once[0]["last_error"].lower()
    hook = Webhook(port=port)  # the webhook comes up: the next retry gets through
    try:
        wait_for(lambda: hook.received, timeout=15, what="the retried POST")
        stored = wait_for(lambda: [a for a in alerts_of(shim, "al") if a["status"] == "delivered"], timeout=10)
        assert stored[0]["attempts"] >= 2
        assert hook.received[0]["body"]["title"] == "diverged"
        assert len(hook.received) == 1
    finally:
        hook.close()


def test_wait_duration_throttles_repeats_of_the_same_title(
    stopped_daemon: DaemonProcess, shim: Any, webhook: Webhook, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped_daemon.start(TRACKIOD_WEBHOOK_URL=webhook.url)
    run = shim.init(project="al", id="throttle1")
    for i in range(3):
        run.log({"x": i})
        run.alert("gpu hot", f"reading {i}", wait_duration=datetime.timedelta(minutes=5))
    run.alert("other", "not throttled", wait_duration=300)
    run.alert("gpu hot", "no wait_duration given: never throttled")
    run.finish()
    stored = wait_for(
        lambda: (
            [a for a in alerts_of(shim, "al") if a["status"] != "pending"]
            if len([a for a in alerts_of(shim, "al") if a["status"] != "pending"]) == 5
            else None
        )
    )
    assert [(a["title"], a["status"]) for a in stored] == [
        ("gpu hot", "delivered"),
        ("gpu hot", "throttled"),
        ("gpu hot", "throttled"),
        ("other", "delivered"),
        ("gpu hot", "delivered"),
    ]
    assert sorted(r["body"]["text"] for r in webhook.received) == [
        "no wait_duration given: never throttled",
        "not throttled",
        "reading 0",
    ]
    assert capsys.readouterr().err.count("ALERT [INFO] gpu hot") == 2


def test_slack_and_discord_get_their_own_payloads(
    stopped_daemon: DaemonProcess, env: dict[str, str], webhook: Webhook
) -> None:
    # The daemon's webhook speaks Slack; a training process with its own TRACKIOD_WEBHOOK_URL (per run)
    # speaks Discord. The URLs are local, so the format is set explicitly (hosts decide it otherwise).
    stopped_daemon.start(TRACKIOD_WEBHOOK_URL=webhook.url + "/slack", TRACKIOD_WEBHOOK_FORMAT="slack")
    script = """
    import trackio_shim as wandb
    run = wandb.init(project="fmt", id=RUN)
    run.log({"acc": 0.9})
    wandb.alert("done", "accuracy 0.9", level=wandb.AlertLevel.ERROR)
    run.finish()
    """
    run_script(script.replace("RUN", "'slack1'"), env)
    discord_env = {**env, "TRACKIOD_WEBHOOK_URL": webhook.url + "/discord", "TRACKIOD_WEBHOOK_FORMAT": "discord"}
    run_script(script.replace("RUN", "'discord1'"), discord_env)
    wait_for(lambda: len(webhook.received) == 2, what="two POSTs")
    by_path = {r["path"]: r["body"] for r in webhook.received}
    slack = by_path["/hook/slack"]
    assert slack["text"] == "[ERROR] done: accuracy 0.9"
    assert slack["blocks"][0]["type"] == "section" and "*done*" in slack["blocks"][0]["text"]["text"]
    assert "fmt/slack1" in slack["blocks"][1]["elements"][0]["text"]
    discord = by_path["/hook/discord"]
    assert discord["content"] == "**[ERROR] done**"
    assert discord["embeds"][0]["title"] == "done" and discord["embeds"][0]["description"] == "accuracy 0.9"
    assert discord["embeds"][0]["color"] == 0xE74C3C and "fmt/discord1" in discord["embeds"][0]["footer"]["text"]


def test_webhook_format_follows_the_host() -> None:
    assert webhook_format("https://hooks.slack.com/services/T/B/X") == "slack"
    assert webhook_format("https://discord.com/api/webhooks/1/abc") == "discord"
    assert webhook_format("https://discordapp.com/api/webhooks/1/abc") == "discord"
    assert webhook_format("https://example.org/hook") == "json"
    assert webhook_format("https://hooks.slack.com/x", configured="json") == "json"
    alert = {"id": 1, "title": "t", "text": "x", "level": "INFO", "project": "p", "run_key": "r", "run_name": "n"}
    assert set(payload("json", {**alert, "ts": 0.0, "step": 3})) == {
        "id",
        "title",
        "text",
        "level",
        "project",
        "run_id",
        "run_name",
        "step",
        "timestamp",
    }


def test_a_webhook_failing_forever_gives_up_cleanly_and_loses_nothing_else(
    stopped_daemon: DaemonProcess, shim: Any, webhook: Webhook
) -> None:
    webhook.status = 500
    stopped_daemon.start(
        TRACKIOD_WEBHOOK_URL=webhook.url, TRACKIOD_WEBHOOK_RETRIES="2", TRACKIOD_WEBHOOK_BACKOFF_S="0.05"
    )
    run = shim.init(project="al", id="fail1")
    for i in range(200):
        run.log({"loss": float(i)})
        if i == 50:
            run.alert("first", "to a broken webhook")
    run.alert("second", "also to the broken webhook")
    run.finish()
    stored = wait_for(
        lambda: (lambda a: a if len(a) == 2 and all(x["status"] == "failed" for x in a) else None)(
            alerts_of(shim, "al")
        ),
        timeout=20,
    )
    assert [a["attempts"] for a in stored] == [3, 3]  # the first try and 2 retries, then it gives up
    assert all(a["last_error"] == "HTTP 500 Internal Server Error" for a in stored)
    assert len(webhook.received) == 6
    assert stopped_daemon.alive and stopped_daemon.status()["alerts_failed"] == 2
    history = list(shim.Api().run("al/fail1").scan_history())
    assert [r["loss"] for r in history] == list(range(200))
    assert shim.Api().run("al/fail1").state == "finished"


def test_pending_alerts_are_delivered_after_a_daemon_restart(
    stopped_daemon: DaemonProcess, shim: Any, webhook: Webhook
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    stopped_daemon.start(TRACKIOD_WEBHOOK_URL=f"http://127.0.0.1:{dead_port}/", TRACKIOD_WEBHOOK_BACKOFF_S="30")
    shim.init(project="al", id="restart1").alert("kept", "survives a restart")
    wait_for(lambda: [a for a in alerts_of(shim, "al") if a["attempts"] >= 1], timeout=15)
    stopped_daemon.terminate()
    # The daemon's webhook is fixed and it restarts: the pending alert goes out then, once.
    stopped_daemon.start(TRACKIOD_WEBHOOK_URL=webhook.url)
    wait_for(lambda: webhook.received, timeout=15, what="the POST after the restart")
    stored = wait_for(lambda: [a for a in alerts_of(shim, "al") if a["status"] == "delivered"], timeout=10)
    assert stored[0]["title"] == "kept" and stored[0]["attempts"] >= 2
    assert len(webhook.received) == 1
