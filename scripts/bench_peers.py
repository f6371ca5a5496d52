#!/usr/bin/env python
"""Run the peer comparison (benchmarks/test_peers.py) at full size; write the table and the latency plot.

    .venv/bin/python scripts/bench_peers.py [--batches 20] [--calls 2000] [--repeats 7] [--kill-steps 600]

Starts its own daemon in a temporary TRACKIOD_HOME, runs every tracker offline in fresh processes, prints a
Markdown table (per-call p50/p90/p99/p99.9, import, init, finish, kill -9 survival) and writes
docs/img/peers_latency.png (the per-call latency distributions) and docs/img/peers_latency.json (the figures).
About 4-6 minutes on 2 cores. Needs the bench extra (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import peers  # noqa: E402
from tests.support.daemons import DaemonProcess  # noqa: E402

OUT = ROOT / "docs" / "img"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRACKIOD_"))}
    env.update({"TRACKIOD_HOME": str(home), "TRACKIOD_AUTOSTART": "0"})
    return env


def _us(ns: float) -> str:
    us = ns / 1000
    return f"{us:,.0f}" if us >= 100 else f"{us:.3g}"


def plot(latency: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    floor = latency["trackio_shim"]["samples"]["floor"]
    series = [("msgpack + zmq floor", floor)] + [(label, r["samples"]["log"]) for label, r in latency.items()]
    for label, values in series:
        us = np.sort(values) / 1000
        ax.plot(
            us,
            np.arange(1, us.size + 1) / us.size,
            label=f"{label} (p50 {np.median(us):.3g} µs)",
            linestyle="--" if label.startswith("msgpack") else "-",
        )
    ax.set_xscale("log")
    ax.set_xlabel("one log() of 10 scalars, µs (log scale)")
    ax.set_ylabel("fraction of calls at most this long")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.axhline(0.99, color="grey", lw=0.5)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch for the fast trackers")
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per tracker for import/init/finish")
    parser.add_argument("--kill-steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    absent = peers.missing(peers.PEERS)
    if absent:
        sys.exit(f"bench_peers: not importable: {', '.join(absent)}; run scripts/setup.sh (bench extra)")

    with tempfile.TemporaryDirectory(prefix="tkpeers") as tmp:
        base = Path(tmp)
        env = _env(base / "home")
        daemon = DaemonProcess(env, base / "daemon.log")
        daemon.start()
        directory = base / "peers"
        setup = peers.Setup(directory, peers.peer_env(env, directory), peers.peer_env(_env(base / "none"), directory))
        try:
            started = time.monotonic()
            latency = peers.compare_latency(setup, args.batches, args.calls)
            print(f"latency: {time.monotonic() - started:.0f} s", file=sys.stderr)
            lifecycle = peers.compare_lifecycle(setup, args.repeats, 100)
            print(f"lifecycle: {time.monotonic() - started:.0f} s", file=sys.stderr)
            kills = peers.compare_kill(setup, args.kill_steps, 5.0, 0.010)
            print(f"kill: {time.monotonic() - started:.0f} s", file=sys.stderr)
        finally:
            daemon.terminate()
            peers.reap_leftovers(directory, grace=5)

    shim = latency["trackio_shim"]["report"]["log"]
    rows = [
        "| tracker | log() p50 | p90 | p99 | p99.9 | p50 / trackio_shim p50 | import | init() | finish() "
        "| kill -9: stored of those logged > 10 ms before |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    floor = latency["trackio_shim"]["report"]["floor"]
    rows.append(
        f"| msgpack + zmq floor | {_us(floor['p50'])} µs | {_us(floor['p90'])} | {_us(floor['p99'])} | "
        f"{_us(floor['p99.9'])} | {floor['p50'] / shim['p50']:.2f}x | | | | |"
    )
    figures: dict[str, dict] = {}
    for label, result in latency.items():
        log = result["report"]["log"]
        life = lifecycle.get(label)
        med = {}
        if life:
            med = {k: statistics.median(r[k] for r in life["reports"]) for k in ("import_ms", "init_ms", "finish_ms")}
        kill = kills.get(label)
        kept = f"{kill['required'] - len(kill['missing_required'])} / {kill['required']}" if kill else "—"
        ms = [f"{med[k]:,.1f} ms" if med else "—" for k in ("import_ms", "init_ms", "finish_ms")]
        rows.append(
            f"| {label} | **{_us(log['p50'])} µs** | {_us(log['p90'])} | {_us(log['p99'])} | {_us(log['p99.9'])} | "
            f"{log['p50'] / shim['p50']:,.1f}x | {' | '.join(ms)} | {kept} |"
        )
        figures[label] = {"log_ns": log, "floor_ns": result["report"]["floor"], **med, "kill": kill}
    table = "\n".join(rows)
    when = time.strftime("%Y-%m-%d %H:%M")
    versions = peers.versions()
    print(table)
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    title = (
        f"log() of 10 scalars, one call at a time, {when}, {os.cpu_count()} cores, CPython {platform.python_version()}"
    )
    plot(latency, args.out / "peers_latency.png", title)
    doc = {
        "when": when,
        "python": platform.python_version(),
        "versions": versions,
        "args": vars(args) | {"out": str(args.out)},
        "figures": figures,
        "table": table,
    }
    (args.out / "peers_latency.json").write_text(json.dumps(doc, indent=1, default=str))
    print(f"wrote {args.out / 'peers_latency.png'} and peers_latency.json", file=sys.stderr)


if __name__ == "__main__":
    main()
