"""Serving the dashboard in the foreground (``trackiod show``, ``trackio_shim.show()``): print its URL, open a
browser where there is one, serve until Ctrl-C.
"""

from __future__ import annotations

import sys

from trackio_shim.settings import TrackiodSettings
from trackiod.dashboard.writes import Control


def serve(
    settings: TrackiodSettings,
    project: str | None = None,
    open_browser: bool | None = None,
    control: Control | None = None,
) -> int:
    """Serve until Ctrl-C; prints the URL first (with the token, when one is needed). Edits made on the page go
    to the daemon through ``control``."""
    from trackiod.dashboard.app import DashboardServer
    from trackiod.dashboard.app import open_browser as launch

    server = DashboardServer(settings, control=control)
    url = server.url(project)
    print(f"trackiod dashboard: {url}", flush=True)
    if not settings.db_path.exists():
        print(f"  (nothing logged under {settings.home} yet; the page fills in once runs are logged)", flush=True)
    if settings.dashboard_open_browser if open_browser is None else open_browser:
        launch(url)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    print("trackiod dashboard stopped", file=sys.stderr)
    return 0
