"""The shim's one seam to the daemon's code: the read-only views of the local database, and the dashboard.

Everything else in the shim talks to the daemon over the wire protocol only. A few public calls read the
data directory directly, as the daemon's readers do (``Api``, ``use_artifact``, ``Run.energy``, the
importers' project check), and ``show()`` serves the dashboard in this process (its run edits sent to the
daemon through trackiod.daemon.control, as ``trackiod show`` does). They reach trackiod through
this module alone, and only on first use: ``import trackio_shim`` (and a training loop) never loads trackiod,
apsw or numpy (tests/test_import_light.py).

The readers are attributes of this module, loaded when first touched (PEP 562)::

    from trackio_shim import _local
    _local.runs.list_runs(conn)             # trackiod.read.runs, imported here on first use
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from trackio_shim.settings import TrackiodSettings

if TYPE_CHECKING:
    from trackiod.read import alerts, artifacts, connection, contexts, energy, files, media, ranks, runs

__all__ = [
    "alerts",
    "artifacts",
    "connection",
    "contexts",
    "energy",
    "files",
    "media",
    "ranks",
    "runs",
    "serve_dashboard",
]

#: The daemon's query-only modules the shim may read with: name here -> module.
_READERS = {name: f"trackiod.read.{name}" for name in __all__ if name != "serve_dashboard"}


def __getattr__(name: str) -> ModuleType:
    target = _READERS.get(name)
    if target is None:
        raise AttributeError(f"module 'trackio_shim._local' has no attribute {name!r}")
    module = importlib.import_module(target)
    globals()[name] = module  # later lookups skip this function
    return module


def serve_dashboard(settings: TrackiodSettings, project: str | None, open_browser: bool | None) -> int:
    """Serve the dashboard in this process until interrupted (``show()``); returns the exit status. Run edits made
    on the page are sent to the daemon (the single writer), as ``trackiod show`` sends them."""
    # Imported here: the dashboard (Starlette, uvicorn) is never loaded by training processes that do not ask.
    from trackiod.daemon.control import dashboard_control
    from trackiod.dashboard.server import serve

    return serve(settings, project, open_browser, control=dashboard_control(settings))
