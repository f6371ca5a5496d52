"""Alerts: stored per run by the writer, delivered to webhooks by a thread of their own, with retries.

The training process only sends an ALERT frame. The writer stores it (``alerts`` table), deciding there
whether ``wait_duration`` throttles it; after the commit an alert with a webhook goes to the
:class:`Notifier` thread, which POSTs it and retries with exponential backoff. Every outcome (delivered, an
attempt failed, given up) comes back to the writer through the :class:`~trackiod.ingest.outbox.Outbox`. Alerts
still pending when the daemon stops are delivered after its next start (at least once).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from trackio_shim.errors import FrameRejected
from trackio_shim.settings import TrackiodSettings
from trackiod.ingest.guard import is_int64, is_time
from trackiod.ingest.outbox import Outbox

log = logging.getLogger("trackiod.alerts")

LEVELS = ("INFO", "WARN", "ERROR")
MAX_TITLE_CHARS = 256
MAX_TEXT_CHARS = 16_384
_BACKOFF_CAP_S = 60.0
_COLORS = {"INFO": 0x2E86DE, "WARN": 0xF39C12, "ERROR": 0xE74C3C}
_EMOJI = {"INFO": ":information_source:", "WARN": ":warning:", "ERROR": ":rotating_light:"}


def webhook_format(url: str, configured: str = "auto") -> str:
    """``slack``, ``discord`` or ``json``: the configured format, or one guessed from the URL's host."""
    if configured != "auto":
        return configured
    host = (urlparse(url).hostname or "").lower()
    if host == "hooks.slack.com":
        return "slack"
    if host in ("discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"):
        return "discord"
    return "json"


def payload(fmt: str, alert: dict[str, Any]) -> dict[str, Any]:
    """The JSON body for one alert in a webhook format. ``alert`` holds the stored row plus project and run."""
    where = f"{alert['project']}/{alert['run_key']} ({alert['run_name']})"
    step = "" if alert.get("step") is None else f", step {alert['step']}"
    if fmt == "slack":
        head = f"{_EMOJI[alert['level']]} *{alert['title']}*"
        return {
            "text": f"[{alert['level']}] {alert['title']}: {alert['text']}",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"{head}\n{alert['text']}"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run {where}{step}"}]},
            ],
        }
    if fmt == "discord":
        return {
            "content": f"**[{alert['level']}] {alert['title']}**",
            "embeds": [
                {
                    "title": alert["title"][:256],
                    "description": alert["text"][:4096],
                    "color": _COLORS[alert["level"]],
                    "footer": {"text": f"run {where}{step}"[:2048]},
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(alert["ts"])),
                }
            ],
        }
    return {
        "id": alert["id"],
        "title": alert["title"],
        "text": alert["text"],
        "level": alert["level"],
        "project": alert["project"],
        "run_id": alert["run_key"],
        "run_name": alert["run_name"],
        "step": alert.get("step"),
        "timestamp": alert["ts"],
    }


class AlertBook:
    """The writer's side: validate, throttle and store ALERT frames; queue deliveries for after the commit."""

    def __init__(self, settings: TrackiodSettings, notifier: Notifier) -> None:
        self.settings = settings
        self.notifier = notifier
        self._to_deliver: list[Delivery] = []

    def add(self, store: Any, run_id: int, alert: dict[str, Any]) -> None:
        """Store one alert inside the open transaction.

        Raises:
            FrameRejected: a field has the wrong type or an unknown level (the frame is dropped with a notice).
        """
        title, text, level = alert.get("title"), alert.get("text"), str(alert.get("level", "INFO")).upper()
        if not isinstance(title, str) or not title or not isinstance(text, str):
            raise FrameRejected("ALERT needs a non-empty str title and a str text")
        if level not in LEVELS:
            raise FrameRejected(f"ALERT level {level!r} is not one of {', '.join(LEVELS)}")
        stamp = alert.get("timestamp")
        if stamp is not None and not is_time(stamp):
            raise FrameRejected("ALERT timestamp must be a finite number")
        if not all(isinstance(alert.get(k) or "", str) for k in ("webhook_url", "webhook_format")):
            raise FrameRejected("ALERT webhook_url and webhook_format must be strings")
        wait = alert.get("wait_duration")
        wait = float(wait) if isinstance(wait, (int, float)) and wait > 0 else None
        ts = float(stamp or time.time())
        step = alert.get("step") if is_int64(alert.get("step")) else None
        url = str(alert.get("webhook_url") or self.settings.webhook_url or "")
        fmt = str(alert.get("webhook_format") or self.settings.webhook_format)
        title, text = title[:MAX_TITLE_CHARS], text[:MAX_TEXT_CHARS]
        throttled = (
            wait is not None
            and store.conn.execute(
                "SELECT 1 FROM alerts WHERE run_id=? AND title=? AND status != 'throttled' AND ts > ? LIMIT 1",
                (run_id, title, ts - wait),
            ).fetchone()
        )
        status = "throttled" if throttled else ("pending" if url else "no_webhook")
        store.conn.execute(
            "INSERT INTO alerts(run_id, step, ts, title, text, level, wait_duration, webhook_url, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            # Only a run's own URL is stored; the daemon's is looked up at delivery, so a fixed daemon
            # configuration applies to alerts still pending after a restart.
            (run_id, step, ts, title, text, level, wait, alert.get("webhook_url") or None, status),
        )
        alert_id = int(store.conn.last_insert_rowid())
        log.info("alert %d (%s) for run %d: %s [%s]", alert_id, level, run_id, title, status)
        if status == "pending":
            self._to_deliver.append(self._delivery(store, alert_id, url, fmt))

    def _delivery(self, store: Any, alert_id: int, url: str, fmt: str) -> Delivery:
        row = store.conn.execute(
            "SELECT a.id, a.step, a.ts, a.title, a.text, a.level, r.run_key, r.name, p.name FROM alerts a "
            "JOIN runs r ON r.id = a.run_id JOIN projects p ON p.id = r.project_id WHERE a.id=?",
            (alert_id,),
        ).fetchone()
        names = ("id", "step", "ts", "title", "text", "level", "run_key", "run_name", "project")
        body = payload(webhook_format(url, fmt), dict(zip(names, row)))
        return Delivery(alert_id=alert_id, url=url, body=json.dumps(body).encode())

    def committed(self) -> None:
        for delivery in self._to_deliver:
            self.notifier.submit(delivery)
        self._to_deliver.clear()

    def rolled_back(self) -> None:
        self._to_deliver.clear()

    def mark(self) -> object:
        """How many deliveries the open transaction has queued (a frame's undo drops those it added)."""
        return len(self._to_deliver)

    def undo_to(self, mark: object) -> None:
        assert isinstance(mark, int)
        del self._to_deliver[mark:]

    def resume_pending(self, store: Any) -> int:
        """Queue the alerts a previous daemon left undelivered; returns how many."""
        rows = store.conn.execute(
            "SELECT id, webhook_url, attempts FROM alerts WHERE status='pending' ORDER BY id"
        ).fetchall()
        for alert_id, url, attempts in rows:
            if not (url or self.settings.webhook_url):
                continue  # its webhook was the daemon's, and this daemon has none: it waits for one
            delivery = self._delivery(store, alert_id, url or self.settings.webhook_url, self.settings.webhook_format)
            delivery.attempts = int(attempts)
            self.notifier.submit(delivery)
        return len(rows)


@dataclass(order=True)
class Delivery:
    """One alert on its way to one webhook."""

    alert_id: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    attempts: int = field(default=0, compare=False)


class Notifier:
    """The delivery thread: POSTs each alert, retrying failures with exponential backoff."""

    def __init__(self, settings: TrackiodSettings, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self._queue: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="trackiod-alerts", daemon=True)
        self._thread.start()

    def submit(self, delivery: Delivery, due: float | None = None) -> None:
        with self._cond:
            heapq.heappush(self._queue, (due or time.monotonic(), next(self._order), delivery))
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self) -> bool:
        """Stop after the attempt in progress; what is left stays 'pending' in the database for next time.

        Waits at most one webhook timeout; True if the thread stopped in that time.
        """
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=self.settings.webhook_timeout_s + 1)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic()))
                if self._stopped:
                    return
                _, _, delivery = heapq.heappop(self._queue)
            self._attempt(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        error, retry = _post(delivery.url, delivery.body, self.settings.webhook_timeout_s)
        alert_id, attempts = delivery.alert_id, delivery.attempts
        if error is None:
            self.delivered += 1
            self.outbox.put(lambda store: _record(store, alert_id, "delivered", attempts, None))
            return
        if retry and attempts <= self.settings.webhook_retries:
            delay = min(_BACKOFF_CAP_S, self.settings.webhook_backoff_s * 2 ** (attempts - 1))
            log.info("alert %d: attempt %d failed (%s); retrying in %.1f s", alert_id, attempts, error, delay)
            self.outbox.put(lambda store: _record(store, alert_id, "pending", attempts, error))
            self.submit(delivery, time.monotonic() + delay)
            return
        self.failed += 1
        log.warning("alert %d: giving up after %d attempt(s): %s", alert_id, attempts, error)
        self.outbox.put(lambda store: _record(store, alert_id, "failed", attempts, error))


def _post(url: str, body: bytes, timeout: float) -> tuple[str | None, bool]:
    """POST ``body`` as JSON: ``(None, _)`` on a 2xx, else ``(error, worth retrying)``."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "trackiod"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return None, False
    except urllib.error.HTTPError as exc:
        # 429 and 5xx are the server's trouble and may pass; another 4xx (a revoked or mistyped webhook)
        # will not, so it is not retried.
        return f"HTTP {exc.code} {exc.reason}", exc.code == 429 or exc.code >= 500
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}", not isinstance(exc, ValueError)


def _record(store: Any, alert_id: int, status: str, attempts: int, error: str | None) -> None:
    store.conn.execute(
        "UPDATE alerts SET status=?, attempts=MAX(attempts, ?), last_error=COALESCE(?, last_error), "
        "delivered_at=CASE WHEN ?='delivered' THEN ? ELSE delivered_at END WHERE id=?",
        (status, attempts, error, status, time.time(), alert_id),
    )
