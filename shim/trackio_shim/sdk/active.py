"""The runs this process has started and not finished (``wandb.run`` is the latest), and finishing them at exit.

The package root shows the latest run as ``trackio_shim.run`` (with its ``config`` and ``summary``); it
follows the changes here through :func:`follow`, so that neither module has to import the other's state.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from trackio_shim._warn import warn_once
from trackio_shim.sdk.wandb_run import Run

#: Held while runs are started, finished and switched, so that two threads never disagree on the latest run.
lock = threading.RLock()
_runs: list[Run] = []
_current: Run | None = None
_listeners: list[Callable[[Run | None], None]] = []
_hooks_installed = False
_exit_code: int | None = None


def follow(listener: Callable[[Run | None], None]) -> None:
    """Call ``listener(run)`` whenever the latest active run changes (None: no run is active)."""
    _listeners.append(listener)


def runs() -> list[Run]:
    """The active runs, oldest first."""
    with lock:
        return list(_runs)


def latest() -> Run | None:
    """The most recently started run that is still active."""
    with lock:
        return _runs[-1] if _runs else None


def add(run: Run) -> None:
    """Make ``run`` the latest active run; it leaves the list when it finishes."""
    with lock:
        _runs.append(run)
        run.on_finish(_forget)
        _make_current(run)
        _install_hooks()


def _forget(run: Run) -> None:
    with lock:
        if run in _runs:
            _runs.remove(run)
        if _current is run:
            _make_current(_runs[-1] if _runs else None)


def _make_current(run: Run | None) -> None:
    global _current
    _current = run
    for listener in _listeners:
        listener(run)


def finish_all(exit_code: int) -> None:
    """Finish every active run; a run that cannot finish is reported (warned once) and the others still are."""
    for leftover in runs():
        try:
            leftover.finish(exit_code=exit_code)
        except Exception as exc:  # at exit or teardown, report and go on; never hang or raise
            warn_once(("finish-all", leftover.id), f"trackio_shim: could not finish run {leftover.id}: {exc}")


def reset() -> None:
    """Forget every run without finishing it (teardown, once they were finished or could not be)."""
    with lock:
        _runs.clear()
        _make_current(None)


def _after_fork_in_child() -> None:
    """A forked child keeps its parent's runs (``wandb.log`` in a worker logs to them), each of which joins
    its run with the child's own session at its first log() (:meth:`Run.detach_after_fork`)."""
    global lock
    lock = threading.RLock()  # another thread of the parent may have held it at the fork
    for run in _runs:
        run.detach_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _install_hooks() -> None:
    """Once per process: note the exit code (an uncaught exception, sys.exit) and finish the runs at exit."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous_hook = sys.excepthook
    previous_exit = sys.exit

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        global _exit_code
        if not issubclass(kind, KeyboardInterrupt) or _exit_code is None:
            _exit_code = 1 if not issubclass(kind, KeyboardInterrupt) else 255
        previous_hook(kind, value, tb)

    def exit_hook(code: Any = None) -> Any:
        global _exit_code
        _exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        return previous_exit(code)

    sys.excepthook = excepthook
    sys.exit = exit_hook
    atexit.register(_finish_at_exit)


def _finish_at_exit() -> None:
    finish_all(_exit_code or 0)
    from trackio_shim.session.client import close_client

    close_client()
