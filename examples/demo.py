"""trackiod demo: three simulated training runs, logged exactly as a wandb script would log them.

Run it with ``./scripts/demo.sh``, which installs everything and points TRACKIOD_HOME at ./demo-home so your
real data is never touched. Run directly, it uses whatever TRACKIOD_HOME says (by default
~/.local/share/trackiod). No daemon needs to be running: the first ``init()`` starts one (autostart). At the
end the demo stops the daemon it started, unless TRACKIOD_DEMO_KEEP=1.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trackio_shim as wandb

PROJECT = "demo"
STEPS = 2_000
LEARNING_RATES = (0.3, 0.03, 0.003)


def trackiod_command() -> list[str]:
    """The ``trackiod`` CLI of this environment (the script beside this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("trackiod")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("trackiod")
    return [found] if found else [sys.executable, "-m", "trackiod"]


def trackiod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*trackiod_command(), *args], capture_output=True, text=True, check=False)


def daemon_status() -> dict[str, Any] | None:
    """``trackiod status --json`` as a dict, or None when no daemon answers."""
    result = trackiod("status", "--json")
    status: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
    return status if status.get("running") else None


def train(lr: float, seed: int) -> str:
    """One simulated training run; returns its id."""
    rng = random.Random(seed)
    config = {"lr": lr, "batch_size": 64, "optimizer": "adamw", "epochs": 4, "model": {"layers": 6, "width": 512}}
    run = wandb.init(project=PROJECT, name=f"lr-{lr:g}", config=config, tags=["demo", "simulated"])
    # Summaries: best validation loss and accuracy instead of the last value; glob names work too.
    wandb.define_metric("val/loss", summary="min")
    wandb.define_metric("val/accuracy", summary="max")
    wandb.define_metric("train/*", summary="last")

    # A made-up learning curve: too high a rate plateaus high, too low a rate learns slowly.
    speed = 4.0 * lr / (lr + 0.02)
    floor = 0.15 + 2.5 * max(0.0, lr - 0.1)
    best_val, best_step = math.inf, -1
    started = time.perf_counter()
    for step in range(STEPS):
        progress = step / STEPS
        loss = floor + 2.3 * math.exp(-speed * 6 * progress) + rng.gauss(0, 0.03)
        accuracy = min(1.0, max(0.0, 1.0 - loss / 2.5 + rng.gauss(0, 0.01)))
        metrics: dict[str, Any] = {
            # A nested dict: stored as train/loss, train/accuracy, train/lr.
            "train": {"loss": loss, "accuracy": accuracy, "lr": lr * 0.5 * (1 + math.cos(math.pi * progress))},
            "epoch": 4 * progress,
        }
        if step % 100 == 99:
            val_loss = loss + 0.05 + rng.gauss(0, 0.02)
            metrics["val/loss"] = val_loss
            metrics["val/accuracy"] = accuracy - 0.02
            if val_loss < best_val:
                best_val, best_step = val_loss, step
        wandb.log(metrics)
    elapsed = time.perf_counter() - started
    run.summary["best_val_step"] = best_step  # an explicit summary value, stored with the run
    print(f"  {run.id}  {run.name:<10} {STEPS} steps logged in {elapsed * 1000:.0f} ms")
    run.finish()
    return str(run.id)


def show_summary(summary: dict[str, Any]) -> str:
    parts = []
    for key in ("val/loss", "val/accuracy", "train/loss", "best_val_step"):
        value = summary.get(key)
        if isinstance(value, dict):
            value = ", ".join(f"{kind} {v:.4f}" for kind, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4f}"
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def report(run_ids: list[str], home: str | None) -> None:
    """Where the data is, what is in it, and how to look at it."""
    status = daemon_status()
    print()
    print(f"Data directory: {status['home'] if status else home}")
    print(f"Database:       {status['database'] if status else 'see trackiod status'}")
    print(f"Daemon:         pid {status['pid']}, {status['endpoint']}" if status else "Daemon: not answering")

    # The read API reads the SQLite file directly; it works with the daemon stopped too.
    api = wandb.Api()
    every_run = api.runs(PROJECT)
    runs = [r for r in every_run if r.id in run_ids]
    print()
    print(f"Runs of this demo (project {PROJECT!r} has {len(every_run)} runs in all):")
    print(f"  {'id':<10}{'name':<12}{'state':<10}{'lr':<8}{'steps':<7}created (UTC)")
    for r in runs:
        steps = "" if r.last_step is None else r.last_step + 1
        print(f"  {r.id:<10}{r.name:<12}{r.state:<10}{r.config['lr']:<8g}{steps!s:<7}{r.created_at[:19]}")
    print()
    print("Summaries:")
    for r in runs:
        print(f"  {r.name}: {show_summary(r.summary)}")
    best = min(runs, key=lambda r: r.summary["val/loss"]["min"])
    rows = list(best.scan_history(keys=["val/loss"]))
    print()
    print(f"Best run: {best.name} ({best.path}); {len(rows)} validation points, the last three:")
    for row in rows[-3:]:
        print(f"  step {row['_step']:>4}  val/loss {row['val/loss']:.4f}")

    cli = " ".join(trackiod_command())
    prefix = f"TRACKIOD_HOME={home} " if home else ""
    print()
    print("Look at it yourself:")
    print(f"  {prefix}{cli} status              # the daemon, while it runs")
    print(f"  {prefix}{cli} runs --project {PROJECT}")
    snippet = f"import trackio_shim as wandb; print(wandb.Api().run('{best.path}').summary)"
    print(f'  {prefix}{sys.executable} -c "{snippet}"')
    print(f"  {prefix}{cli} show                # the dashboard, in a browser")


def main() -> int:
    home = os.environ.get("TRACKIOD_HOME")
    already_running = daemon_status() is not None
    print(f"trackiod demo: {len(LEARNING_RATES)} simulated runs of {STEPS:,} steps in project {PROJECT!r}")
    if not already_running:
        print("  (no daemon is running: the first init() starts one)")
    try:
        run_ids = [train(lr, seed) for seed, lr in enumerate(LEARNING_RATES)]
        report(run_ids, home)
    finally:
        # Never leave behind a daemon the demo started, even when something above failed.
        print()
        if already_running:
            print("The daemon was already running before the demo; it is left running.")
        elif os.environ.get("TRACKIOD_DEMO_KEEP") == "1":
            prefix = f"TRACKIOD_HOME={home} " if home else ""
            print(f"TRACKIOD_DEMO_KEEP=1: the daemon is left running; stop it with: {prefix}trackiod stop")
        else:
            result = trackiod("stop")
            print(f"Stopping the daemon the demo started: {(result.stdout or result.stderr).strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
