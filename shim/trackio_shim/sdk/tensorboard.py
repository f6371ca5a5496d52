"""``init(sync_tensorboard=True)`` and ``trackio_shim.tensorboard.patch()``: a run gets what its SummaryWriters write.

:func:`patch` wraps the constructor of the event-file writer of ``torch.utils.tensorboard`` (tensorboard's
``EventFileWriter``) and of ``tensorboardX``, so every SummaryWriter that opens a directory is seen. The
directory is sent to the run in one TENSORBOARD frame; the daemon reads the event files from there on
(trackiod/attachments/tensorboard.py). The training process reads and copies nothing.

Keys: a directory's tags keep their names; a directory below the first one seen (or below ``root_logdir``) puts
its relative path before them (``"train/loss"`` for ``<root>/train``), one outside it its own name.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.sdk.run_link import RunLink
from trackio_shim.sdk.wandb_run import Run

#: The event-file writers hooked, by module and class name.
_WRITERS = {
    "pytorch": ("tensorboard.summary.writer.event_file_writer", "EventFileWriter"),
    "tensorboard_x": ("tensorboardX.event_file_writer", "EventFileWriter"),
}


class _Hooks:
    """The process's patch: the hooked constructors, the directories seen, and the run that gets them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.originals: list[tuple[type, Any]] = []
        self.root: Path | None = None
        #: ``(logdir, prefix, opened)`` seen while no run followed (sent to the next run that follows).
        self.pending: list[tuple[str, str, float]] = []
        #: Every writer the hooks saw, flushed when a following run finishes.
        self.writers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.link: RunLink | None = None
        self.sent: set[str] = set()

    @property
    def patched(self) -> bool:
        return bool(self.originals)

    def install(self, wanted: list[str], root: Path | None) -> None:
        """Wrap the constructors of the ``wanted`` writers (the ones importable), once."""
        import importlib

        with self.lock:
            if root is not None:
                self.root = root
            if self.originals:
                return
            for which in wanted:
                module_name, class_name = _WRITERS[which]
                try:
                    cls = getattr(importlib.import_module(module_name), class_name)
                except ImportError:
                    continue
                self.originals.append((cls, cls.__init__))
                setattr(cls, "__init__", _hooked(cls.__init__))  # noqa: B010 (mypy refuses assigning __init__)

    def uninstall(self) -> None:
        with self.lock:
            for cls, original in self.originals:
                setattr(cls, "__init__", original)  # noqa: B010 (mypy refuses assigning __init__)
            self.originals.clear()
            self.root, self.link = None, None
            self.pending.clear()

    def prefix(self, logdir: Path) -> str:
        if self.root is None:
            self.root = logdir
        try:
            relative = logdir.relative_to(self.root).as_posix()
        except ValueError:
            return f"{logdir.name}/"
        return "" if relative == "." else f"{relative}/"

    def seen(self, logdir: Any, writer: Any, opened: float) -> None:
        """A writer opened ``logdir`` at ``opened``: send it to the following run, or keep it for the next one."""
        path = Path(os.path.abspath(os.fspath(logdir)))
        with self.lock:
            self.writers.add(writer)
            spec = (str(path), self.prefix(path), opened)
            link = self.link
            if link is None or link.finished:
                self.pending.append(spec)
                return
            self._send(link, spec)

    def _send(self, link: RunLink, spec: tuple[str, str, float]) -> None:
        if spec[0] in self.sent:
            return
        self.sent.add(spec[0])
        # "since": files of the directory last written before then are earlier runs', not this one's.
        link.send(P.TENSORBOARD, {"logdir": spec[0], "prefix": spec[1], "since": spec[2]})

    def follow(self, link: RunLink) -> None:
        with self.lock:
            self.link, self.sent = link, set()
            pending, self.pending = self.pending, []
            for spec in pending:
                self._send(link, spec)

    def finished(self, run: Run) -> None:
        """Flush every writer (the daemon reads for a few seconds after the run ends); warn if none was seen."""
        with self.lock:
            sent = bool(self.sent)
            writers = list(self.writers)
            if self.link is not None and self.link.finished:
                self.link = None
        for writer in writers:
            try:
                writer.flush()
            except Exception:  # a closed or broken writer of the user's: its files are what they are
                pass
        if not sent:
            warn_once(
                ("tensorboard-nothing", run.id),
                f"trackio_shim: run {run.id} followed TensorBoard (sync_tensorboard=True or tensorboard.patch()) but "
                "no SummaryWriter opened a directory while it ran, so nothing from TensorBoard was stored; create "
                "the SummaryWriter after init()",
            )


_hooks = _Hooks()


def patch(
    save: bool = True, tensorboard_x: bool | None = None, pytorch: bool | None = None, root_logdir: str = ""
) -> None:
    """Hook the SummaryWriters of ``torch.utils.tensorboard`` and ``tensorboardX`` (both by default), as wandb's.

    Call it before creating the writers; the runs started from then on get what they write. ``root_logdir``
    sets the directory that key prefixes are relative to (default: the first directory a writer opens).
    ``save`` is accepted for wandb's signature: the event files stay where they are and the daemon reads
    them in place.
    """
    del save
    wanted = [which for which, flag in (("pytorch", pytorch), ("tensorboard_x", tensorboard_x)) if flag is not False]
    _hooks.install(wanted, Path(os.path.abspath(root_logdir)) if root_logdir else None)
    if not _hooks.patched:
        warn_once(
            "tensorboard-unpatched",
            "trackio_shim: sync_tensorboard needs torch.utils.tensorboard (the tensorboard package) or tensorboardX; "
            "none was hooked (not importable, or turned off), so no TensorBoard values will be stored",
        )


def unpatch() -> None:
    """Undo :func:`patch`: writers created from now on are not followed."""
    _hooks.uninstall()


def _hooked(original: Any) -> Any:
    def __init__(self: Any, logdir: Any, *args: Any, **kwargs: Any) -> None:
        opened = time.time()
        original(self, logdir, *args, **kwargs)
        try:
            _hooks.seen(logdir, self, opened)
        except Exception as exc:  # never into the training loop
            warn_once(("tensorboard-hook", type(exc).__name__), f"trackio_shim: sync_tensorboard failed: {exc!r}")

    return __init__


def follow(run: Run, link: RunLink, sync_tensorboard: bool) -> None:
    """A run started: with ``sync_tensorboard`` (or after :func:`patch`) it gets the directories writers open."""
    if sync_tensorboard:
        patch()
    if not _hooks.patched:
        return
    _hooks.follow(link)
    run.on_finish(_hooks.finished)
