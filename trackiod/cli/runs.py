"""``trackiod runs``: the runs in the database, read directly (it works with the daemon stopped)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from trackio_shim.settings import TrackiodSettings
from trackiod.cli.common import reader
from trackiod.cli.format import print_table, when


def cmd_runs(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.read.runs import list_runs

    with reader(settings) as conn:
        runs = list_runs(conn, args.project)
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    if not runs:
        print("no runs" + (f" in project {args.project!r}" if args.project else ""))
        return 0
    table: list[tuple[Any, ...]] = [("project", "id", "name", "state", "steps", "started", "duration")]
    for r in runs:
        end = r["ended_at"] or r["updated_at"]
        table.append(
            (
                r["project"],
                r["run_key"],
                r["name"],
                r["state"],
                "" if r["last_step"] is None else str(r["last_step"] + 1),
                when(r["created_at"]),
                f"{end - r['created_at']:.1f}s",
            )
        )
    print_table(table)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``runs`` to the ``trackiod`` parser's subcommands."""
    runs = sub.add_parser("runs", parents=[common], help="list runs (works with the daemon stopped)")
    runs.add_argument("--project", help="only this project")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)
