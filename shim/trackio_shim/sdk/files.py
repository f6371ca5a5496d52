"""``save()``: ask the daemon to copy files into the run's file store (trackiod/files.py does the copying).

The training process resolves the glob to an absolute pattern and a base directory and sends them; the
daemon (same user, same node) copies the files, now, at the end of the run, or whenever they change.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from typing import Any

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.errors import UsageError
from trackio_shim.sdk.run_link import RunLink

POLICIES = ("live", "now", "end")
_MAGIC = ("*", "?", "[")


def _fixed_prefix(pattern: str) -> str:
    """The directory part of an absolute glob before its first wildcard."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if any(ch in part for ch in _MAGIC):
            break
        fixed.append(part)
    return os.sep.join(fixed) or os.sep


def save(link: RunLink, glob_str: Any, base_path: Any = None, policy: str = "live") -> list[str]:
    """Save files matching ``glob_str`` with the run; see :meth:`Run.save`.

    Raises:
        UsageError: an unknown policy, an empty glob, or a glob that reaches outside ``base_path``.
    """
    if policy not in POLICIES:
        raise UsageError(f"save(policy={policy!r}): use 'live', 'now' or 'end'")
    if glob_str is None or not os.fspath(glob_str):
        raise UsageError("save() needs a file name or glob pattern")
    raw = os.fspath(glob_str)
    pattern = os.path.abspath(raw)
    if base_path is not None:
        base = os.path.abspath(os.fspath(base_path))
    elif os.path.isabs(raw):
        base = _fixed_prefix(pattern)
    else:
        base = os.getcwd()
    if os.path.commonpath([base, _fixed_prefix(pattern)]) != base:
        raise UsageError(
            f"save({raw!r}, base_path={base!r}): the files are not inside base_path; pass a base_path that "
            "contains them (their names in the run are relative to it)"
        )
    matched = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not matched:
        if policy == "now":
            warn_once(("save-none", raw), f"trackio_shim: save({raw!r}): no file matches; nothing was saved")
            return []
        else:
            warn_once(
                ("save-none", raw),
                f"trackio_shim: save({raw!r}, policy={policy!r}): no file matches yet; files that match "
                "before the run ends will be saved",
            )
    link.send(P.SAVE_FILES, {"pattern": pattern, "base": base, "policy": policy, "matched": len(matched)})
    return matched


_SKIPPED_DIRS = {"__pycache__", "wandb", "trackiod", "node_modules"}


def _is_source(path: str, root: str) -> bool:
    name = os.path.basename(path)
    return (
        name.endswith(".py")
        or (name.startswith("requirements") and name.endswith(".txt"))
        or name.startswith("Dockerfile")
    )


def source_files(
    root: str | os.PathLike[str],
    include_fn: Callable[..., bool] | None = None,
    exclude_fn: Callable[..., bool] | None = None,
) -> Iterator[str]:
    """The files ``Run.log_code`` saves: under ``root``, not in hidden or tool folders, chosen by the two tests."""
    top = os.path.abspath(os.fspath(root))
    include = include_fn or _is_source
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for file in sorted(files):
            path = os.path.join(folder, file)
            if include(path, top) and not (exclude_fn is not None and exclude_fn(path, top)):
                yield path
