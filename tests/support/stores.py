"""A run in a bare Store, for the tests that drive the writer and the readers without a daemon."""

from __future__ import annotations

from trackiod.store.writer import Store


def new_run(store: Store, run_key: str = "r1") -> int:
    """Create run ``run_key`` of project "proj" (tags ["t"], config {"lr": 0.1}); returns its row id."""
    with store.conn:
        row = store.create_run("proj", run_key, "name", {"tags": ["t"]}, {"lr": 0.1}, "host", 123)
    return int(row["id"])
