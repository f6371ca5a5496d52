"""Starting a detached trackiod for a data directory (autostart, ``trackiod start``). Imported only then."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading

from trackio_shim.settings import TrackiodSettings


def spawn_daemon(settings: TrackiodSettings) -> subprocess.Popen[bytes] | None:
    """Start a detached daemon for ``settings.home``. Safe to race: the daemon's own lock keeps one alive.

    Returns the process, or None when another process is starting one right now. Its stderr goes to the
    daemon's log file, so a failure to start is written down somewhere.

    Raises:
        OSError: the interpreter could not be started.
    """
    settings.ensure_dirs()
    lock_path = settings.home / "autostart.lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another process is starting one right now
        env = dict(os.environ)
        # The switch (trackio_shim.switch.ENV_VAR) is for the training process: in the daemon, `import wandb`
        # must stay the real wandb, which the wandb mirror drives.
        env.pop("TRACKIO_SHIM_AS", None)
        env.update(settings.child_env())
        with open(settings.log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "trackiod", "start", "--foreground"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
                close_fds=True,
                cwd="/",  # never pin the training job's working directory (it may be on a network mount)
            )
        threading.Thread(target=proc.wait, name="trackio_shim-reaper", daemon=True).start()
        return proc
    finally:
        os.close(fd)
