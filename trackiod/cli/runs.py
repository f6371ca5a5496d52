"""``trackiod runs``: the runs in the database, read directly (it works with the daemon stopped)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from trackio_shim.settings import TrackiodSettings
from trackiod.cli.common import reader
from trackiod.cli.format import print_table, when


def cmd_runs(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.read.runs import list_runs, run_table

    with reader(settings) as conn:
        if args.json:
            print(json.dumps(list_runs(conn, args.project), indent=2, default=str))
            return 0
        runs = run_table(conn, args.project)
    if not runs:
        print("no runs" + (f" in project {args.project!r}" if args.project else ""))
        return 0
    table: list[tuple[Any, ...]] = [("project", "id", "name", "state", "steps", "started", "duration")]
    for project, run_key, name, state, last_step, created_at, ended_at, updated_at in runs:
        end = ended_at or updated_at
        table.append(
            (
                project,
                run_key,
                name,
                state,
                "" if last_step is None else str(last_step + 1),
                when(created_at),
                f"{end - created_at:.1f}s",
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
