"""What a training script's user sees: the line at init(), the summary at finish(), the inline dashboard.

All of it goes to stderr, and none of it when ``TRACKIOD_SILENT`` or ``WANDB_SILENT`` is set. IPython is
never imported here: the inline dashboard is shown only when a Jupyter kernel has already loaded it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from trackio_shim.settings import TrackiodSettings

if TYPE_CHECKING:
    from trackio_shim.sdk.wandb_run import Run

_TRUE = {"1", "true", "yes", "on"}


def is_silent(settings: TrackiodSettings) -> bool:
    """TRACKIOD_SILENT (a setting) or WANDB_SILENT (read for compatibility) is on."""
    return settings.silent or os.environ.get("WANDB_SILENT", "").strip().lower() in _TRUE


def dashboard_url(settings: TrackiodSettings) -> str | None:
    """The URL of the dashboard the running daemon serves (``daemon.json``'s ``dashboard``), else None."""
    try:
        url = json.loads(settings.state_path.read_text()).get("dashboard")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) and url else None


def run_url(base: str, project: str, run_id: str) -> str:
    """A run's page on the dashboard (docs/dashboard.md's URL parameters); ``base`` may carry a token."""
    from urllib.parse import urlencode

    query = urlencode({"project": project, "view": "run", "run": run_id})
    return f"{base}&{query}" if "?" in base else f"{base.rstrip('/')}/?{query}"


def announce(run: Run, url: str | None) -> None:
    """init()'s one line: which run, and where to look at it; plus the inline dashboard in Jupyter."""
    verb = "resumed" if run.resumed else "started"
    where = f"view it at {url}" if url else "run `trackiod show` to see it"
    offline = "" if run._client is None or run._client.last_heard else " (no daemon yet: data is kept until one runs)"
    print(f"trackiod: run {run.name} ({run.project}/{run.id}) {verb}{offline}; {where}", file=sys.stderr)
    if url is not None and "ipykernel" in sys.modules:
        _show_inline(url)


def _show_inline(url: str) -> None:
    try:
        from IPython.display import IFrame, display

        display(IFrame(url, width="100%", height=480))
    except Exception:  # a notebook front end we do not know: the printed URL is enough
        pass


def farewell(run: Run, info: dict[str, Any] | None, stats: dict[str, Any] | None, state: str) -> None:
    """finish()'s summary: points stored, anything still buffered or spooled, the run's state."""
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
    print(f"trackiod: run {run.name} ({run.project}/{run.id}) {state}{detail}", file=sys.stderr)
