"""The daemon's commands: ``start``, ``stop``, ``status`` and ``keys`` (forwarding's CURVE keys)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from trackio_shim.errors import DaemonAlreadyRunning, DaemonError
from trackio_shim.settings import TrackiodSettings

# The daemon client (trackiod.daemon.control, with zmq) is imported by the handlers that talk to the daemon, so
# that `trackiod runs` and the other reads never load it (benchmarks/test_history.py times their start-up).
from trackiod.cli.format import human_bytes, recovery_line, sync_lines, writes_line
from trackiod.cli.show import add_server_flags


def cmd_start(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackio_shim.session.autostart import spawn_daemon
    from trackiod.daemon import control

    if args.listen is not None or args.forward is not None:
        from trackiod.daemon.forward import preflight
        from trackiod.daemon.node_role import remember_role

        try:
            preflight(settings)  # a role stored without keys would stop every later daemon of this node
        except DaemonError as exc:
            print(f"trackiod: could not start: {exc}", file=sys.stderr)
            return 1
        remember_role(settings.home, listen=args.listen, forward=args.forward)
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
            reason = _start_failure(settings)
            print(
                f"trackiod: the daemon exited at start (code {proc.returncode})"
                + (f": {reason}" if reason else "")
                + f"; see {settings.log_path}",
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
            for label, value in _network_rows(status):
                print(f"  {label}: {value}")
            return 0
    print(
        f"trackiod: the daemon did not come up within {settings.autostart_timeout_s:.0f}s; see {settings.log_path}",
        file=sys.stderr,
    )
    return 1


def _start_failure(settings: TrackiodSettings) -> str | None:
    """Why a background daemon exited at start: the line it wrote to its log (its stderr) as it gave up."""
    try:
        with open(settings.log_path, "rb") as log_file:
            log_file.seek(max(0, log_file.seek(0, 2) - 65536))
            tail = log_file.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    marker = "trackiod: could not start: "
    found = [line.split(marker, 1)[1] for line in tail if marker in line]
    return found[-1].rsplit(" (details in ", 1)[0] if found else None


def _network_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    """The forwarding and listening lines of ``trackiod status`` and ``trackiod start`` (docs/forwarding.md)."""
    rows = []
    forward = status.get("forward")
    if forward:
        text = (
            f"to {forward['to']}: {forward.get('state', 'unknown')}, {forward['forwarded']} frames forwarded, "
            f"{forward['backlog']} waiting"
        )
        if forward.get("last_error"):
            text += f"; last error: {forward['last_error']}"
        rows.append(("forward", text))
    listener = status.get("listener")
    if listener:
        text = f"on {listener['on']}: {listener['forwarders']} forwarders seen"
        if listener.get("refused"):
            text += f", {listener['refused']} refused (last key {listener['last_refused_key']})"
        if listener.get("last_error"):
            text += f"; last error: {listener['last_error']}"
        rows.append(("listen", text))
    return rows


def cmd_keys(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.daemon.forward import authorize, set_head_key, write_keys

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


def cmd_stop(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.daemon import control

    pid = control.daemon_pid(settings)
    before = control.request(settings, "status", timeout=1.0)
    active: list[str] = list(before[1].get("active_runs") or []) if before is not None else []
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
    if active:
        # Their shims keep logging (into memory, then the spool) and, with autostart on, start a daemon again.
        print(
            f"note: {len(active)} run(s) were still being logged: {', '.join(active[:5])}"
            f"{', ...' if len(active) > 5 else ''}. Their trainers keep every point, and those with autostart on "
            "(TRACKIOD_AUTOSTART, the default) start trackiod again within a few seconds. To keep it stopped, "
            "stop those trainers first, or start them with TRACKIOD_AUTOSTART=0.",
            file=sys.stderr,
        )
    return 0


def cmd_status(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    from trackiod.daemon import control

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
        ("database", f"{status['database']} ({human_bytes(status['database_bytes'])})"),
        ("active runs", ", ".join(status["active_runs"]) or "none"),
        ("ingest", f"{status['frames_per_s']:.0f} frames/s, {status['points_per_s']:.0f} points/s"),
        ("commit latency", f"p50 {status['commit_ms_p50']} ms, p99 {status['commit_ms_p99']} ms"),
        (
            "spool",
            f"{status['spooled_frames_ingested']} frames ingested, {status['spool_files_pending']} files pending"
            + (
                f", {status['spool_files_set_aside']} unreadable files set aside (*.bad)"
                if status.get("spool_files_set_aside")
                else ""
            ),
        ),
        *(
            [("lost", f"{status['frames_lost']} frames (spool files deleted or truncated before they were read)")]
            if status.get("frames_lost")
            else []
        ),
        (
            "dropped",
            f"{status['duplicates_dropped']} duplicates, {status['malformed_frames']} malformed frames, "
            f"{status['internal_errors']} internal errors",
        ),
        ("last error", status["last_error"] or "none"),
        ("writes", writes_line(status.get("writes"))),
        *([("recovered", recovery_line(status["database_recovered"]))] if status.get("database_recovered") else []),
        ("sampling", _sampling_line(status.get("sampling") or {})),
        *sync_lines(status["sync"]),
        ("dashboard", status.get("dashboard") or "not served (trackiod show, or start --dashboard)"),
        *(_network_rows(status) or [("forward", "off (this node neither forwards nor listens)")]),
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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``start``, ``keys``, ``stop`` and ``status`` to the ``trackiod`` parser's subcommands."""
    start = sub.add_parser("start", parents=[common], help="start the daemon (in the background by default)")
    start.add_argument("--foreground", action="store_true", help="run in this process (for systemd)")
    start.add_argument("--flush-interval", type=float, help="commit deadline in seconds (TRACKIOD_FLUSH_INTERVAL_S)")
    start.add_argument(
        "--sample-interval",
        type=float,
        help="system/GPU sampling period in seconds, 0 = off (TRACKIOD_SAMPLE_INTERVAL_S)",
    )
    start.add_argument("--dashboard", action="store_true", help="also serve the dashboard (TRACKIOD_DASHBOARD)")
    start.add_argument(
        "--listen",
        help="accept forwarding daemons on tcp://HOST:PORT, with CURVE; kept for this data directory, off clears it "
        "(TRACKIOD_LISTEN)",
    )
    start.add_argument(
        "--forward",
        help="forward everything to a head daemon at tcp://HEAD:PORT; kept for this data directory, so every daemon "
        "of it forwards (autostart too); off clears it (TRACKIOD_FORWARD)",
    )
    add_server_flags(start)
    start.set_defaults(func=cmd_start)
    keys = sub.add_parser("keys", parents=[common], help="make this node's CURVE keys; authorise forwarders")
    keys.add_argument("--authorize", metavar="KEY", help="let the forwarder with this public key connect (head)")
    keys.add_argument("--head", metavar="KEY", help="the head's public key, which the forwarder checks (node)")
    keys.set_defaults(func=cmd_keys)
    sub.add_parser("stop", parents=[common], help="drain, commit and stop the daemon").set_defaults(func=cmd_stop)
    status = sub.add_parser("status", parents=[common], help="show the daemon's state")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
