"""``python -m trackio_shim [--as wandb,trackio] script.py [args...]`` (or ``-m module``): run a program whose
``import wandb`` / ``import trackio`` should mean trackio_shim, without changing a line of it.

The switch is installed (:func:`trackio_shim.switch.install`) before the program's first line runs, and
``TRACKIO_SHIM_AS`` is exported so that the program's own child processes (DataLoader workers, ddp_spawn
ranks, launchers) get it too, through the ``.pth`` hook the wheel installs.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from trackio_shim.errors import UsageError
from trackio_shim.switch import ENV_VAR, install, parse_names

USAGE = "python -m trackio_shim [--as wandb,trackio] (script.py | -m module) [args...]"


def main(argv: list[str] | None = None) -> int:
    """Run the program named in ``argv`` (default: sys.argv[1:]) under the switch; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m trackio_shim",
        usage=USAGE,
        description="Run a program with `import wandb` and `import trackio` meaning trackio_shim.",
    )
    parser.add_argument(
        "--as", dest="names", default=os.environ.get(ENV_VAR) or "wandb,trackio", help="names to take over"
    )
    parser.add_argument("-m", dest="module", help="run a module as a script, like python -m")
    parser.add_argument("target", nargs=argparse.REMAINDER, help="the script and its arguments")
    args = parser.parse_args(argv)
    if not args.module and not args.target:
        parser.error("name a script or a module (-m)")
    try:
        names = parse_names(args.names, "--as")
    except UsageError as exc:
        parser.error(str(exc))
    os.environ[ENV_VAR] = ",".join(names)
    install(names)
    if args.module:
        sys.argv = [args.module, *args.target]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    else:
        script, *rest = args.target
        sys.argv = [script, *rest]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
    return 0
