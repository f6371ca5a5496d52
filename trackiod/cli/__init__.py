"""The ``trackiod`` command: start, stop, status, runs, show, energy, card, sync and the rest.

Errors are one clear line; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from trackio_shim.errors import DaemonAlreadyRunning, TrackiodError
from trackio_shim.session.autostart import spawn_daemon
from trackio_shim.settings import TrackiodSettings
from trackiod import __version__
from trackiod.cli import data as cli_data
from trackiod.cli import energy as cli_energy
from trackiod.cli import show as dashboard_cli
from trackiod.daemon import control
from trackiod.daemon.integrity import recovery_line
from trackiod.ingest.stall import status_line as stall_line


def _settings(args: argparse.Namespace) -> TrackiodSettings:
    from trackiod.cli.show import server_overrides

    return TrackiodSettings.load(
        home=args.home,
        log_level=args.log_level,
        flush_interval_s=getattr(args, "flush_interval", None),
        sample_interval_s=getattr(args, "sample_interval", None),
        dashboard=True if getattr(args, "dashboard", False) else None,
        listen=getattr(args, "listen", None),
        forward=getattr(args, "forward", None),
        **server_overrides(args),
    )


def cmd_start(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.foreground:
        from trackiod.daemon.logs import setup_logging
        from trackiod.daemon.process import Daemon

        settings.ensure_dirs()
        setup_logging(settings, to_stderr=True)
        try:
            return Daemon(settings).run()
        except DaemonAlreadyRunning as exc:
            print(f"trackiod: {exc}", file=sys.stderr)
            return 0
        except Exception as exc:  # a daemon that cannot start says why in its log, in one line on stderr
            logging.getLogger("trackiod").exception("trackiod could not start")
            print(f"trackiod: could not start: {exc} (details in {settings.log_path})", file=sys.stderr)
            return 1
    answer = control.request(settings, "status", timeout=0.5)
    if answer is not None:
        print(f"trackiod is already running (pid {answer[1]['pid']}) on {settings.endpoint}")
        if answer[1].get("dashboard"):
            print(f"  dashboard: {answer[1]['dashboard']}")
        elif settings.dashboard:
            print("  it serves no dashboard: stop it and start it again with --dashboard, or run `trackiod show`")
        return 0
    proc = spawn_daemon(settings)
    deadline = time.monotonic() + settings.autostart_timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None and control.daemon_pid(settings) is None:
            print(
                f"trackiod: the daemon exited at start (code {proc.returncode}); see {settings.log_path}",
                file=sys.stderr,
            )
            return 1
        answer = control.request(settings, "status", timeout=0.5)
        if answer is not None:
            status = answer[1]
            print(
                f"trackiod started (pid {status['pid']})\n  endpoint: {status['endpoint']}\n"
                f"  database: {status['database']}\n  log:      {settings.log_path}"
            )
            if status.get("dashboard"):
                print(f"  dashboard: {status['dashboard']}")
            if status.get("database_recovered"):
                print(f"trackiod: warning: {recovery_line(status['database_recovered'])}", file=sys.stderr)
            return 0
    print(
        f"trackiod: the daemon did not come up within {settings.autostart_timeout_s:.0f}s; see {settings.log_path}",
        file=sys.stderr,
    )
    return 1


def cmd_keys(args: argparse.Namespace) -> int:
    from trackiod.daemon.forward import authorize, set_head_key, write_keys

    settings = _settings(args)
    public, created = write_keys(settings.keys_dir)
    print(f"{'created' if created else 'kept'} this node's key pair in {settings.keys_dir} (secret key mode 0600)")
    print(f"public key: {public.decode()}")
    if args.authorize:
        authorize(settings.keys_dir, args.authorize)
        print(f"authorised forwarder key {args.authorize.strip()}")
    if args.head:
        set_head_key(settings.keys_dir, args.head)
        print(f"head key set to {args.head.strip()}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    settings = _settings(args)
    pid = control.daemon_pid(settings)
    answer = control.request(settings, "stop", timeout=2.0)
    if answer is None and pid is None:
        print("trackiod is not running")
        return 0
    if pid is not None and not control.wait_until(
        lambda: control.daemon_pid(settings) is None, settings.drain_timeout_s + 10
    ):
        print(f"trackiod: pid {pid} did not stop in time; see {settings.log_path}", file=sys.stderr)
        return 1
    print("trackiod stopped" + (f" (pid {pid})" if pid else ""))
    return 0


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    answer = control.request(settings, "status", timeout=2.0)
    if answer is None:
        if args.json:
            print(json.dumps({"running": False, "endpoint": settings.endpoint, "home": str(settings.home)}))
        else:
            print(f"trackiod is not running (endpoint {settings.endpoint})")
        return 3
    status: dict[str, Any] = answer[1]
    if args.json:
        print(json.dumps({"running": True, **status}, indent=2))
        return 0
    rows = [
        ("pid", status["pid"]),
        ("uptime", f"{status['uptime_s']:.0f} s"),
        ("endpoint", status["endpoint"]),
        ("database", f"{status['database']} ({_human_bytes(status['database_bytes'])})"),
        ("active runs", ", ".join(status["active_runs"]) or "none"),
        ("ingest", f"{status['frames_per_s']:.0f} frames/s, {status['points_per_s']:.0f} points/s"),
        ("commit latency", f"p50 {status['commit_ms_p50']} ms, p99 {status['commit_ms_p99']} ms"),
        (
            "spool",
            f"{status['spooled_frames_ingested']} frames ingested, {status['spool_files_pending']} files pending",
        ),
        (
            "dropped",
            f"{status['duplicates_dropped']} duplicates, {status['malformed_frames']} malformed frames, "
            f"{status['internal_errors']} internal errors",
        ),
        ("last error", status["last_error"] or "none"),
        ("writes", stall_line(status.get("writes"))),
        *([("recovered", recovery_line(status["database_recovered"]))] if status.get("database_recovered") else []),
        ("sampling", _sampling_line(status.get("sampling") or {})),
        *cli_data.sync_lines(status["sync"]),
        ("dashboard", status.get("dashboard") or "not served (trackiod show, or start --dashboard)"),
    ]
    rows += _mirror_rows(status.get("mirrors") or {})
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


def _sampling_line(sampling: dict[str, Any]) -> str:
    if not sampling.get("interval_s"):
        return "off"
    cost = sampling.get("core_percent")
    return f"every {sampling['interval_s']:g} s, {sampling['samples']} samples, GPUs: {sampling['nvml']}" + (
        "" if cost is None else f", {cost:.3f}% of a core"
    )


def _mirror_rows(hub: dict[str, Any]) -> list[tuple[str, Any]]:
    """One line for the mirror queue, then one per mirror (docs/mirrors.md explains the states)."""
    mirrors = hub.get("mirrors") or []
    if not mirrors and not hub.get("daemon_mirrors"):
        return [("mirrors", "none")]
    queue = f"{hub['queued_points']} points queued (limit {hub['queue_limit_points']})"
    if hub.get("overflow_points"):
        queue += f", {hub['overflow_points']} points not mirrored after the queue filled"
    daemon_wide = ", ".join(hub.get("daemon_mirrors") or []) or "none"
    rows: list[tuple[str, Any]] = [("mirrors", f"daemon-wide: {daemon_wide}; {queue}")]
    for m in mirrors:
        text = f"{m['run']} -> {m['spec']}: {m['state']}, {m['points']} points mirrored"
        if m["pending"]:
            text += f", {m['pending']} waiting"
        if m["dropped"]:
            text += f", {m['dropped']} not mirrored (still in the local database)"
        if m["last_error"]:
            text += f"; last error: {m['last_error']}"
        rows.append(("", text))
    return rows


def cmd_runs(args: argparse.Namespace) -> int:
    from trackiod.read.connection import open_reader
    from trackiod.read.runs import list_runs

    settings = _settings(args)
    try:
        conn = open_reader(settings.db_path)
    except FileNotFoundError as exc:
        print(f"trackiod: {exc}", file=sys.stderr)
        return 1
    try:
        runs = list_runs(conn, args.project)
    finally:
        conn.close()
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    if not runs:
        print("no runs" + (f" in project {args.project!r}" if args.project else ""))
        return 0
    header = ("project", "id", "name", "state", "steps", "started", "duration")
    table = [header]
    for r in runs:
        end = r["ended_at"] or r["updated_at"]
        table.append(
            (
                r["project"],
                r["run_key"],
                r["name"],
                r["state"],
                "" if r["last_step"] is None else str(r["last_step"] + 1),
                datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M:%S"),
                f"{end - r['created_at']:.1f}s",
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackiod", description="Local experiment-tracking daemon.")
    parser.add_argument("--version", action="version", version=f"trackiod {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="data directory (TRACKIOD_HOME)")
    common.add_argument("--log-level", help="daemon log level (TRACKIOD_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", parents=[common], help="start the daemon (in the background by default)")
    start.add_argument("--foreground", action="store_true", help="run in this process (for systemd)")
    start.add_argument("--flush-interval", type=float, help="commit deadline in seconds (TRACKIOD_FLUSH_INTERVAL_S)")
    start.add_argument(
        "--sample-interval",
        type=float,
        help="system/GPU sampling period in seconds, 0 = off (TRACKIOD_SAMPLE_INTERVAL_S)",
    )
    start.add_argument("--dashboard", action="store_true", help="also serve the dashboard (TRACKIOD_DASHBOARD)")
    start.add_argument("--listen", help="accept forwarding daemons on tcp://HOST:PORT, with CURVE (TRACKIOD_LISTEN)")
    start.add_argument("--forward", help="forward everything to a head daemon at tcp://HEAD:PORT (TRACKIOD_FORWARD)")
    dashboard_cli.add_server_flags(start)
    start.set_defaults(func=cmd_start)
    keys = sub.add_parser("keys", parents=[common], help="make this node's CURVE keys; authorise forwarders")
    keys.add_argument("--authorize", metavar="KEY", help="let the forwarder with this public key connect (head)")
    keys.add_argument("--head", metavar="KEY", help="the head's public key, which the forwarder checks (node)")
    keys.set_defaults(func=cmd_keys)
    sub.add_parser("stop", parents=[common], help="drain, commit and stop the daemon").set_defaults(func=cmd_stop)
    status = sub.add_parser("status", parents=[common], help="show the daemon's state")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    runs = sub.add_parser("runs", parents=[common], help="list runs (works with the daemon stopped)")
    runs.add_argument("--project", help="only this project")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)
    dashboard_cli.add_command(sub, common)
    cli_energy.add_parsers(sub, common)
    cli_data.add_commands(sub, common)
    from trackiod.cli import attachments as cli_extras

    cli_extras.register(sub, common, lambda handler: lambda args: handler(args, _settings(args)))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trackiod`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.func in (cli_energy.cmd_energy, cli_energy.cmd_card):
            return int(args.func(args, _settings(args)))
        return int(args.func(args))
    except TrackiodError as exc:
        if args.debug:
            raise
        print(f"trackiod: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
