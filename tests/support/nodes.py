"""Several trackiod nodes on one machine, for the forwarding and network tests: homes, ports and CURVE keys."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def trackiod_keys(env: dict[str, str], *flags: str) -> str:
    """Run ``trackiod keys`` for the home of ``env`` with ``flags`` (pairs: flag, key); returns its public key."""
    # --flag=KEY, as docs/forwarding.md says: about one Z85 key in 85 begins with '-', which argparse would
    # take for an option if given as a separate word.
    joined = [f"{flag}={value}" for flag, value in zip(flags[::2], flags[1::2])]
    out = subprocess.run(
        [sys.executable, "-m", "trackiod", "keys", *joined], env=env, capture_output=True, text=True, check=True
    ).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("public key: "))


def env_for_node(env: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    """``env`` for one node of several on this machine: its own home under ``tmp_path``, no sampling."""
    return {**env, "TRACKIOD_HOME": str(tmp_path / name), "TRACKIOD_SAMPLE_INTERVAL_S": "0"}
