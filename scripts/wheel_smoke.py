"""End-to-end check of an installed trackiod, run by scripts/check_wheel.sh with the clean venv's interpreter.

Run from outside the repository with TRACKIOD_HOME set to an empty folder: nothing here may come from the
checkout. It does what a new user does after `pip install`: a training script whose init() autostarts the
daemon, then `trackiod status`, `runs`, `export` and `show` (answering /api/info), then Api() reading the run
back, and `trackiod stop`. Exits non-zero with the reason on the first thing that does not work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

HOME = Path(os.environ["TRACKIOD_HOME"])
BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKIOD_", "WANDB_"))}
ENV.update(TRACKIOD_HOME=str(HOME), TRACKIOD_RUNTIME_DIR=str(HOME.parent / "rt"))
STEPS = 200


def fail(why: str) -> None:
    sys.exit(f"wheel_smoke: {why}")


def run(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def check_switch() -> None:
    """The wheel's .pth turns the switch on with TRACKIO_SHIM_AS, and only then (no real wandb in this venv)."""
    probe = "import importlib.metadata, wandb; print(wandb.__name__, importlib.metadata.version('wandb'))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**ENV, "TRACKIO_SHIM_AS": "wandb"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 or "trackio_shim.switch.wandb" not in out.stdout:
        fail(f"TRACKIO_SHIM_AS=wandb did not make `import wandb` give trackio_shim:\n{out.stdout}\n{out.stderr}")
    off = subprocess.run([sys.executable, "-c", "import wandb"], env=ENV, capture_output=True, text=True, timeout=60)
    if off.returncode == 0 or "No module named 'wandb'" not in off.stderr:
        fail(f"without TRACKIO_SHIM_AS, `import wandb` did not fail as it should:\n{off.stderr}")


def main() -> None:
    import trackio_shim

    if "site-packages" not in trackio_shim.__file__:
        fail(f"trackio_shim comes from {trackio_shim.__file__}, not the installed wheel")
    training = f"""
        import trackio_shim as wandb
        run = wandb.init(project="smoke", config={{"lr": 0.1}})
        for i in range({STEPS}):
            wandb.log({{"loss": 1 / (i + 1)}})
        wandb.finish()
        print(run.id)
    """
    run_id = run(sys.executable, "-c", textwrap.dedent(training)).strip().splitlines()[-1]
    check_switch()
    status = json.loads(run(str(BIN / "trackiod"), "status", "--json"))
    if not status.get("pid"):
        fail(f"autostart left no daemon answering status: {status}")
    if run_id not in run(str(BIN / "trackiod"), "runs", "--project", "smoke"):
        fail(f"`trackiod runs` does not list {run_id}")
    out = HOME.parent / "export"
    run(str(BIN / "trackiod"), "export", "--project", "smoke", "--format", "csv", str(out))
    if not any(out.rglob("*.csv")):
        fail(f"`trackiod export` wrote no CSV under {out}")

    show = subprocess.Popen(
        [str(BIN / "trackiod"), "show", "--port", "0", "--no-browser"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert show.stdout is not None
        line = show.stdout.readline()  # "trackiod dashboard: http://127.0.0.1:PORT/..."
        if "http" not in line:
            fail(f"`trackiod show` printed {line!r}")
        base = line.split(": ", 1)[1].strip().split("?")[0].split("/#")[0].rstrip("/")
        with urllib.request.urlopen(base + "/api/info", timeout=10) as reply:
            info = json.load(reply)
        if not info:
            fail("/api/info answered nothing")
    finally:
        show.terminate()
        show.wait(timeout=20)

    api_run = trackio_shim.Api().run(f"smoke/{run_id}")
    rows = list(api_run.scan_history(keys=["loss"]))
    if api_run.state != "finished" or len(rows) != STEPS or api_run.config.get("lr") != 0.1:
        fail(f"Api() read back state={api_run.state} rows={len(rows)} config={dict(api_run.config)}")
    run(str(BIN / "trackiod"), "stop")
    deadline = time.monotonic() + 20
    while (HOME / "daemon.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"wheel_smoke: passed ({STEPS} steps of run {run_id} logged, listed, exported, served and read back)")


if __name__ == "__main__":
    main()
