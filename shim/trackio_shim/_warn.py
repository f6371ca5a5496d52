"""One-time warnings of the shim, shown at the caller's line.

A training loop that logs a bad value a million times must see one warning, not a million: each cause warns
once per process. The warning points at the user's own line: the innermost frame that is neither the shim's
nor an installed library's nor the standard library's. A framework calling the shim for the user (Lightning's
logger, transformers' callback, code that imports wandb through the switch) is looked through, so the warning
names the user's ``trainer.fit(...)``, not a line inside the framework. Where no frame is the user's (a
library's own thread), it names the first frame outside the shim.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from collections.abc import Hashable
from types import FrameType

_warned: set[Hashable] = set()
_warned_lock = threading.Lock()
#: Frames whose file lies under this folder are the shim's own.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: Any folder of installed packages (another environment's, one on PYTHONPATH) is a library's too.
_INSTALLED = os.sep + "site-packages" + os.sep
_DEBIAN = os.sep + "dist-packages" + os.sep


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Folders of installed libraries and of the standard library: their frames are looked through.

    Computed at the first warning: sysconfig loads a module of its own, and ``import trackio_shim`` loads only
    the standard library, zmq and msgpack (tests/shim/test_import_light.py)."""
    import sysconfig

    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple(sorted({os.path.abspath(paths[key]) + os.sep for key in keys if paths.get(key)}))


def _new_lock_after_fork() -> None:
    global _warned_lock
    _warned_lock = threading.Lock()  # the parent's pump may have held it at the fork


os.register_at_fork(after_in_child=_new_lock_after_fork)


def warn_once(cause: Hashable, message: str) -> None:
    """Issue ``message`` as a UserWarning, at the user's line, the first time ``cause`` is seen in this process."""
    with _warned_lock:
        if cause in _warned:
            return
        _warned.add(cause)
    frame = _user_frame(sys._getframe(1))
    if frame is None:
        warnings.warn(message, UserWarning, stacklevel=2)
        return
    module_globals = frame.f_globals
    warnings.warn_explicit(
        message,
        UserWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=str(module_globals.get("__name__", "<unknown>")),
        registry=module_globals.setdefault("__warningregistry__", {}),
    )


def _user_frame(start: FrameType) -> FrameType | None:
    """The innermost frame from ``start`` outwards that is the user's, else the first one outside the shim."""
    outside: FrameType | None = None
    libraries = _library_dirs()
    frame: FrameType | None = start
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR):
            if outside is None:
                outside = frame
            if not (filename.startswith(("<frozen ", *libraries)) or _INSTALLED in filename or _DEBIAN in filename):
                return frame
        frame = frame.f_back
    return outside
