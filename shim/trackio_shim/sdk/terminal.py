"""What a training script's user sees: the line at init(), the summary at finish(), the inline dashboard.

All of it goes to stderr, and none of it when ``TRACKIOD_SILENT`` or ``WANDB_SILENT`` is set. IPython is
never imported here: the inline dashboard is shown only when a Jupyter kernel has already loaded it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from trackio_shim import daemon_state
from trackio_shim.errors import TrackiodError
from trackio_shim.settings import TrackiodSettings

_TRUE = {"1", "true", "yes", "on"}


def is_silent(settings: TrackiodSettings) -> bool:
    """TRACKIOD_SILENT (a setting) or WANDB_SILENT (read for compatibility) is on."""
    return settings.silent or os.environ.get("WANDB_SILENT", "").strip().lower() in _TRUE


def dashboard_url(settings: TrackiodSettings) -> str | None:
    """The URL of the dashboard the running daemon serves (``daemon.json``'s ``dashboard``), else None."""
    state = daemon_state.read(settings.state_path)
    return state.dashboard if state is not None else None


def run_url(base: str, project: str, run_id: str) -> str:
    """A run's page on the dashboard (docs/dashboard.md's URL parameters); ``base`` may carry a token."""
    from urllib.parse import urlencode

    query = urlencode({"project": project, "view": "run", "run": run_id})
    return f"{base}&{query}" if "?" in base else f"{base.rstrip('/')}/?{query}"


def announce(name: str, path: str, resumed: bool, heard: bool, url: str | None) -> None:
    """init()'s one line: which run (``path`` is project/id), and where to look at it; plus the inline dashboard
    in Jupyter. ``heard``: a daemon has answered this session (else the line says the data waits for one)."""
    verb = "resumed" if resumed else "started"
    shown = _without_token(url) if url else None
    where = "run `trackiod show` to see it" if not shown else f"view it at {shown}"
    if shown and shown != url:  # stderr lands in job logs others may read: the token stays out of it
        where += " (with the token `trackiod status` shows)"
    offline = "" if heard else " (no daemon yet: data is kept until one runs)"
    print(f"trackiod: run {name} ({path}) {verb}{offline}; {where}", file=sys.stderr)
    if url is not None and "ipykernel" in sys.modules:
        _show_inline(url)


def _without_token(url: str) -> str:
    """``url`` with its ``token`` query parameter left out."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _show_inline(url: str) -> None:
    try:
        from IPython.display import IFrame, display

        display(IFrame(url, width="100%", height=480))
    except Exception:  # a notebook front end we do not know: the printed URL is enough
        pass


def farewell(name: str, path: str, info: dict[str, Any] | None, stats: dict[str, Any] | None, state: str) -> None:
    """finish()'s summary of run ``name`` (``path`` is project/id): points stored, anything still buffered or
    spooled, the run's state."""
    parts = []
    if info is not None:
        parts.append(f"{info['points']:,} points stored")
        state = str(info.get("state") or state)
    if stats is not None:
        unacked = stats["seq"] - stats["acked"]
        if stats["spool_files"] and unacked > 0:
            parts.append(f"{unacked:,} messages spooled to {stats['spool_files'][-1]} (stored when trackiod runs)")
        elif unacked > 0:
            parts.append(f"{unacked:,} messages not yet acknowledged")
        elif info is not None:
            parts.append("nothing left buffered")
    detail = f": {', '.join(parts)}" if parts else ""
    print(f"trackiod: run {name} ({path}) {state}{detail}", file=sys.stderr)


_termwarned: set[str] = set()


def termlog(string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """A line for the user on stderr, as ``wandb.termlog`` (integrations written for wandb call it); silent
    when TRACKIOD_SILENT or WANDB_SILENT is set. ``repeat=False`` prints each text once per process."""
    _term("", string, newline, repeat, prefix)


def termwarn(string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """A warning line on stderr, as ``wandb.termwarn``."""
    _term("WARNING ", string, newline, repeat, prefix)


def termerror(string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """An error line on stderr, as ``wandb.termerror`` (nothing is raised)."""
    _term("ERROR ", string, newline, repeat, prefix)


def _term(level: str, string: str, newline: bool, repeat: bool, prefix: bool) -> None:
    try:
        silent = is_silent(TrackiodSettings.load())
    except TrackiodError:  # broken settings are reported where they matter (init); still print the line
        silent = False
    if silent:
        return
    text = str(string)
    if not repeat:
        if text in _termwarned:
            return
        _termwarned.add(text)
    head = f"trackiod: {level}" if prefix else ""
    print(head + text, end="\n" if newline else "", file=sys.stderr)
