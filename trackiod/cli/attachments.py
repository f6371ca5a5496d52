"""CLI commands for alerts and artifacts: ``trackiod alerts``, ``trackiod artifacts ls|get``.

They read the database through query-only connections, so they work with the daemon running or stopped.
Errors are TrackiodError subclasses: trackiod.cli.main prints them as one line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from trackio_shim.errors import TrackiodError
from trackio_shim.settings import TrackiodSettings
from trackiod.cli.common import reader
from trackiod.cli.format import print_table, when
from trackiod.cli.progress import Progress


def cmd_alerts(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.read import alerts as read_alerts

    with reader(settings) as conn:
        alerts = read_alerts.list_alerts(conn, args.project, args.run, limit=args.limit)
    if args.json:
        print(json.dumps(alerts, indent=2))
        return 0
    if not alerts:
        print("no alerts" + (f" in project {args.project!r}" if args.project else ""))
        return 0
    rows: list[tuple[str, ...]] = [("time", "level", "project/run", "step", "title", "text", "delivery")]
    for a in reversed(alerts):
        delivery = a["status"] + (f" ({a['attempts']} attempts: {a['last_error']})" if a["status"] == "failed" else "")
        text = a["text"] if len(a["text"]) <= 60 else a["text"][:57] + "..."
        step = "" if a["step"] is None else str(a["step"])
        rows.append((when(a["ts"]), a["level"], f"{a['project']}/{a['run_id']}", step, a["title"], text, delivery))
    print_table(rows)
    return 0


def cmd_artifacts_ls(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.read import artifacts as read_artifacts

    with reader(settings) as conn:
        versions = read_artifacts.list_artifacts(conn, args.project)
    if args.json:
        print(json.dumps(versions, indent=2))
        return 0
    if not versions:
        print("no artifacts" + (f" in project {args.project!r}" if args.project else ""))
        return 0
    rows: list[tuple[str, ...]] = [
        ("project", "artifact", "type", "version", "aliases", "files", "size", "produced by", "used by")
    ]
    for v in versions:
        rows.append(
            (
                v["project"],
                v["name"],
                v["type"],
                f"v{v['version']}",
                ", ".join(v["aliases"]),
                str(v["file_count"]),
                str(v["size"]),
                v["producer"] or "",
                ", ".join(v["used_by"]),
            )
        )
    print_table(rows)
    return 0


def cmd_artifacts_get(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.read import artifacts as read_artifacts

    with reader(settings) as conn:
        default = args.project
        if default is None and "/" not in args.ref.partition(":")[0]:
            # No project given: the one project that has an artifact of this name, if there is just one.
            owners = read_artifacts.projects_with_artifact(conn, args.ref.partition(":")[0])
            if len(owners) > 1:
                raise TrackiodError(f"projects {', '.join(owners)} all have {args.ref!r}; pass --project")
            default = owners[0] if owners else None
        project, name, alias = read_artifacts.parse_ref(args.ref, default)
        version = read_artifacts.resolve(conn, project, name, alias)
    with Progress(f"{project}/{name}:v{version['version']}", total=version["size"] or None, unit="B") as bar:
        if args.dest:
            path = read_artifacts.export(version, settings.blobs_dir, Path(args.dest), bar.update)
        else:
            dest = settings.artifacts_dir / project / name / f"v{version['version']}"
            path = read_artifacts.materialise(version, settings.blobs_dir, dest, bar.update)
    print(path)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``alerts`` and ``artifacts ls|get`` to the ``trackiod`` parser's subcommands."""
    alerts = sub.add_parser("alerts", parents=[common], help="list alerts and their webhook delivery")
    alerts.add_argument("--project", help="only this project")
    alerts.add_argument("--run", help="only this run id")
    alerts.add_argument("--limit", type=int, default=200, help="newest N alerts (default 200)")
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(func=cmd_alerts)
    artifacts = sub.add_parser("artifacts", parents=[common], help="list or fetch artifacts")
    verbs = artifacts.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", parents=[common], help="every artifact version, aliases and lineage")
    ls.add_argument("--project", help="only this project")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_artifacts_ls)
    get = verbs.add_parser("get", parents=[common], help="materialise a version and print its path")
    get.add_argument("ref", help="[project/]name[:alias or vN] (alias defaults to latest)")
    get.add_argument("--project", help="project, when the reference names none")
    get.add_argument("--dest", help="copy the files into this directory instead")
    get.set_defaults(func=cmd_artifacts_get)
