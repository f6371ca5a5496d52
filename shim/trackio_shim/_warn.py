"""One-time warnings of the shim, shown at the caller's line.

A training loop that logs a bad value a million times must see one warning, not a million: each cause warns
once per process. The warning points at the first frame outside trackio_shim, the user's own line (``log()``
called there), not at whichever shim module noticed the problem.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Hashable

_warned: set[Hashable] = set()
_warned_lock = threading.Lock()
#: Frames whose file lies under this folder are the shim's own; the warning skips past them.
_PACKAGE_DIR = os.path.dirname(__file__) + os.sep


def _new_lock_after_fork() -> None:
    global _warned_lock
    _warned_lock = threading.Lock()  # the parent's pump may have held it at the fork


os.register_at_fork(after_in_child=_new_lock_after_fork)


def warn_once(cause: Hashable, message: str) -> None:
    """Issue ``message`` as a UserWarning the first time ``cause`` is seen in this process."""
    with _warned_lock:
        if cause in _warned:
            return
        _warned.add(cause)
    warnings.warn(message, UserWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """warn_once's ``stacklevel`` for the innermost frame outside trackio_shim (1 is warn_once itself)."""
    level = 2
    frame = sys._getframe(2)  # warn_once's caller (this function is frame 0, warn_once frame 1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level
