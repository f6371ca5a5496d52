"""The CLI's data commands: ``sync``, ``export``, ``pull``, ``import``, ``deploy``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from trackio_shim.errors import HubError
from trackio_shim.settings import TrackiodSettings

# The daemon client (trackiod.daemon.control, with zmq) is imported by the handlers that talk to the daemon, so
# that `trackiod runs` and the other reads never load it (benchmarks/test_history.py times their start-up).
from trackiod.cli.common import reader
from trackiod.cli.format import sync_lines

#: How long ``trackiod sync --now`` waits for the daemon's pass.
SYNC_WAIT_S = 600.0


def cmd_sync(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.daemon import control

    if not args.now:
        answer = control.request(settings, "sync_status", timeout=2.0)
        if answer is None:
            print("trackiod is not running; `trackiod sync --now` syncs without it")
            return 3
        status = answer[1]
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            for label, text in sync_lines(status):
                print(f"{label}: {text}")
            print(f"next pass in {status['next_pass_in_s']:.0f} s")
        return 0
    answer = control.request(settings, "sync", timeout=2.0)
    if answer is not None:
        return _wait_for_pass(settings, int(answer[1]["ticket"]), args.json)
    return _sync_here(settings, args.json)


def _wait_for_pass(settings: TrackiodSettings, ticket: int, as_json: bool) -> int:
    from trackiod.daemon import control

    deadline = time.monotonic() + SYNC_WAIT_S
    while time.monotonic() < deadline:
        answer = control.request(settings, "sync_status", timeout=2.0)
        if answer is None:
            print("trackiod: the daemon stopped answering during the sync", file=sys.stderr)
            return 1
        status = answer[1]
        if status["completed"] >= ticket:
            if as_json:
                print(json.dumps(status, indent=2))
            else:
                for label, text in sync_lines(status):
                    print(f"{label}: {text}")
            return 0 if all(s["state"] == "ok" for s in status["repos"].values()) else 1
        time.sleep(0.1)
    print(f"trackiod: the sync did not finish within {SYNC_WAIT_S:.0f} s; see `trackiod status`", file=sys.stderr)
    return 1


def _sync_here(settings: TrackiodSettings, as_json: bool) -> int:
    """No daemon: sync from this process (through a query-only connection, as the daemon would)."""
    from trackiod.sync.engine import SyncEngine

    engine = SyncEngine(settings)
    results: dict[str, Any] = {}
    with engine.exclusive(wait=True):
        for repo in engine.plan():
            try:
                outcome = engine.sync_repo(repo)
                results[repo] = {
                    "state": "ok",
                    "committed": outcome.committed,
                    "points": outcome.points,
                    "what": outcome.describe(),
                }
            except HubError as exc:
                results[repo] = {"state": "failed", "message": str(exc)}
    if as_json:
        print(json.dumps(results, indent=2))
    elif not results and engine.left_to_head:
        print(f"nothing to sync here: this node forwards to {engine.left_to_head}, which syncs its runs")
    elif not results:
        print("nothing to sync: no run names a dataset_id or space_id, and TRACKIOD_SYNC_DATASET is unset")
    for repo, r in results.items() if not as_json else ():
        if r["state"] == "ok":
            done = f"committed {r['what']}" if r["committed"] else "already up to date"
            print(f"sync {repo}: {done}")
        else:
            print(f"sync {repo}: failed: {r['message']}")
    return 0 if all(r["state"] == "ok" for r in results.values()) else 1


def cmd_export(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.sync.export import export

    with reader(settings) as conn:
        try:
            written = export(conn, args.project, args.run, args.format, Path(args.out), settings.home)
        except ValueError as exc:
            print(f"trackiod: {exc}", file=sys.stderr)
            return 1
    print(f"exported {len(written)} file(s) to {args.out}")
    return 0


def cmd_pull(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.sync.pull import pull

    restored = pull(settings, args.dataset, force=args.force)
    print(f"restored {len(restored)} run(s) into {settings.db_path}")
    for name in restored:
        print(f"  {name}")
    return 0


def cmd_import(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackio_shim.sdk import importers

    common = dict(
        name=args.name, space_id=args.space_id, dataset_id=args.dataset_id, force=args.force, settings=settings
    )
    if args.kind == "csv":
        runs = [importers.import_csv(args.path, args.project, **common)]
    else:
        runs = importers.import_tf_events(
            args.path, args.project, **common, on_skip=lambda run, line: print(f"{run}: {line}", file=sys.stderr)
        )
    for run in runs:
        print(f"imported {run.project}/{run.id} ({run.name})")
    return 0


def cmd_deploy(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.sync.deploy import deploy_space, space_host, write_space
    from trackiod.sync.hub import dataset_for_space, make_hub

    dataset = args.dataset or settings.sync_dataset or dataset_for_space(args.space)
    if args.out:
        written = write_space(args.space, dataset, Path(args.out))
        print(f"wrote {len(written)} files for Space {args.space} (reading {dataset}) to {args.out}")
        return 0
    deploy_space(make_hub(settings), args.space, dataset, private=not args.public)
    print(
        f"deployed https://huggingface.co/spaces/{args.space} (reading dataset {dataset})\n"
        f'embed: <iframe src="https://{space_host(args.space)}.hf.space" width="100%" height="900"></iframe>'
    )
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the data commands to the ``trackiod`` parser's subcommands."""
    sync = sub.add_parser("sync", parents=[common], help="show the Hub sync state, or sync now (--now)")
    sync.add_argument("--now", action="store_true", help="sync every repository now, paused ones included")
    sync.add_argument("--json", action="store_true")
    sync.set_defaults(func=cmd_sync)

    export = sub.add_parser("export", parents=[common], help="export a project or run to parquet, csv or jsonl")
    export.add_argument("--project", required=True)
    export.add_argument("--run", help="only this run id")
    export.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet")
    export.add_argument("out", help="output directory (or a .csv/.jsonl file with --run)")
    export.set_defaults(func=cmd_export)

    pull = sub.add_parser("pull", parents=[common], help="restore runs from a synced dataset (the daemon stopped)")
    pull.add_argument("dataset", help="dataset id ORG/NAME, or a local folder in the same layout")
    pull.add_argument("--force", action="store_true", help="replace local runs with the same ids")
    pull.set_defaults(func=cmd_pull)

    imp = sub.add_parser("import", parents=[common], help="import a CSV file or TensorBoard event files")
    imp.add_argument("kind", choices=("csv", "tensorboard"))
    imp.add_argument("path", help="the CSV file, or the TensorBoard log directory")
    imp.add_argument("--project", required=True)
    imp.add_argument("--name", help="run name (for TensorBoard: a prefix of each subdirectory's run)")
    imp.add_argument("--space-id", help="sync the run(s) to this Space's dataset")
    imp.add_argument("--dataset-id", help="sync the run(s) to this dataset")
    imp.add_argument("--force", action="store_true", help="import into a project that already has runs")
    imp.set_defaults(func=cmd_import)

    deploy = sub.add_parser("deploy", parents=[common], help="publish a read-only dashboard Space for a dataset")
    deploy.add_argument("--space", required=True, help="ORG/NAME of the Space")
    deploy.add_argument("--dataset", help="ORG/NAME of the dataset (default: TRACKIOD_SYNC_DATASET or SPACE-dataset)")
    deploy.add_argument("--out", help="only write the Space's files into this directory")
    deploy.add_argument("--public", action="store_true", help="create the Space public (default: private)")
    deploy.set_defaults(func=cmd_deploy)
