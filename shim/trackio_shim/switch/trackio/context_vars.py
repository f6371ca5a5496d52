"""``trackio.context_vars`` under the switch: the current run and project, as transformers reads them.

trackio keeps them in ContextVars; here each is a read-only view of trackio_shim's current run with the same
``get()``. No Space is ever current (trackiod is local), so ``current_space_id`` and ``current_server`` stay None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trackio_shim


class CurrentValue:
    """``get(default)`` as a ContextVar's, reading a value that follows trackio_shim's current run."""

    def __init__(self, name: str, read: Callable[[], Any]) -> None:
        self.name = name
        self._read = read

    def get(self, default: Any = None) -> Any:
        value = self._read()
        return default if value is None else value

    def __repr__(self) -> str:
        return f"<trackio_shim view {self.name}={self._read()!r}>"


def _project() -> str | None:
    run = trackio_shim.run
    return run.project if run is not None else None


current_run = CurrentValue("current_run", lambda: trackio_shim.run)
current_project = CurrentValue("current_project", _project)
current_space_id = CurrentValue("current_space_id", lambda: None)
current_server = CurrentValue("current_server", lambda: None)
