"""``alert()``: a message about a run, stored by the daemon and delivered by it to a webhook.

The training process only validates, prints the alert once on stderr, and sends one ALERT frame; the
daemon stores it and does the HTTP work (trackiod/alerts.py), so a slow or dead webhook never reaches the
training loop.
"""

from __future__ import annotations

import datetime
import sys
import time
from enum import Enum
from typing import Any

from trackio_shim import protocol as P
from trackio_shim.errors import UsageError
from trackio_shim.sdk.run_link import RunLink


class AlertLevel(str, Enum):
    """How serious an alert is (as ``wandb.AlertLevel``)."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def _level(level: Any) -> str:
    if isinstance(level, AlertLevel):
        return level.value
    name = str(level).upper()
    if name == "WARNING":
        name = "WARN"
    if name not in AlertLevel.__members__:
        raise UsageError(f"alert(level={level!r}): use AlertLevel.INFO, AlertLevel.WARN or AlertLevel.ERROR")
    return name


def _seconds(wait_duration: Any) -> float | None:
    if wait_duration is None:
        return None
    if isinstance(wait_duration, datetime.timedelta):
        seconds = wait_duration.total_seconds()
    elif isinstance(wait_duration, (int, float)) and not isinstance(wait_duration, bool):
        seconds = float(wait_duration)
    else:
        raise UsageError(f"alert(wait_duration={wait_duration!r}): pass seconds (int or float) or a timedelta")
    if seconds < 0:
        raise UsageError(f"alert(wait_duration={wait_duration!r}) cannot be negative")
    return seconds


def send_alert(
    link: RunLink,
    printed: dict[str, float],
    step: int,
    silent: bool,
    title: str,
    text: str,
    level: Any,
    wait_duration: Any,
) -> None:
    """Validate, print once, and send one alert at ``step`` (see :meth:`Run.alert`).

    ``printed`` maps the run's alert titles to when each was last printed (updated here), ``silent`` keeps
    stderr quiet.

    Raises:
        UsageError: an empty or non-str title, an unknown level, or a negative or non-numeric wait_duration.
    """
    if not isinstance(title, str) or not title.strip():
        raise UsageError("alert() needs a non-empty title")
    if not isinstance(text, str):
        text = str(text)
    name = _level(level)
    wait = _seconds(wait_duration)
    now = time.time()
    last = printed.get(title)
    # The daemon decides for good (it sees every process of the run); this only keeps the terminal quiet.
    throttled = wait is not None and last is not None and now - last < wait
    if not throttled:
        printed[title] = now
        if not silent:
            print(f"trackiod: ALERT [{name}] {title}: {text}", file=sys.stderr, flush=True)
    settings = link.settings
    body: dict[str, Any] = {
        "title": title,
        "text": text,
        "level": name,
        "wait_duration": wait,
        "step": step,
        "timestamp": now,
    }
    if settings is not None and settings.webhook_url:
        body["webhook_url"] = settings.webhook_url
        body["webhook_format"] = settings.webhook_format
    link.send(P.ALERT, body)
