"""An interpreter where wandb and trackio are NOT installed, as in a user's environment, for the switch's tests.

The shared virtual environment has the real wandb and trackio (the peer benchmarks need them), so a test that
imports wandb there cannot tell the switch from the real package. :func:`venv_without` makes a bare virtual
environment whose site-packages holds a ``.pth`` naming this checkout and a folder of links to every installed
distribution except the hidden ones, plus the wheel's ``trackio_shim_switch.pth`` (as ``pip install`` puts it).
Child processes (spawned ranks, DataLoader workers) use the same interpreter, so they see the same packages.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.support.daemons import ROOT

HIDDEN = ("wandb", "trackio")


def venv_without(folder: Path, hidden: tuple[str, ...] = HIDDEN) -> Path:
    """A virtual environment under ``folder`` without the ``hidden`` distributions; returns its python."""
    python = folder / "venv" / "bin" / "python"
    if python.exists():
        return python
    deps = folder / "deps"
    deps.mkdir(parents=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        top = re.split(r"[-.]", entry.name, maxsplit=1)[0].lower()
        # .pth files and editable-install finders would put the shared checkout (or more) on the path.
        if entry.suffix == ".pth" or entry.name.startswith("__editable__") or top in (*hidden, "trackiod"):
            continue
        (deps / entry.name).symlink_to(entry)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder / "venv")], check=True, timeout=120)
    (venv_site,) = (folder / "venv" / "lib").glob("python*/site-packages")
    # Sorted before trackio_shim_switch.pth, so the checkout is importable when the switch's hook runs.
    (venv_site / "00_trackiod_checkout.pth").write_text(f"{ROOT}\n{ROOT / 'shim'}\n{deps}\n")
    shutil.copy(ROOT / "shim" / "trackio_shim_switch.pth", venv_site)
    return python
