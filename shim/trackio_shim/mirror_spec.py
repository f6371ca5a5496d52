"""Mirror specifications: ``"kind"`` or ``"kind:target"``, as given to ``init(mirror=...)`` or TRACKIOD_MIRRORS.

Parsed on both sides: the shim checks a run's specs at ``init()`` (so a typo fails there, naming the spec) and
makes path targets absolute (the daemon has another working directory); the daemon parses TRACKIOD_MIRRORS.
The mirrors themselves run in the daemon (trackiod/mirrors/, docs/mirrors.md).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from trackio_shim.errors import UsageError

#: kind -> what its target means (shown in error messages).
MIRROR_KINDS = {
    "tensorboard": "a directory for the event files",
    "csv": "a .csv file, or a directory",
    "mlflow": "an MLflow tracking URI (file:/path, http://host:5000) or a directory",
    "wandb": "a wandb project name (optional)",
}
_PATH_KINDS = frozenset({"tensorboard", "csv"})
_REQUIRED_TARGET = frozenset({"tensorboard", "csv"})


class MirrorSpec(NamedTuple):
    """One mirror: a kind from :data:`MIRROR_KINDS` and its target (None where the kind has a default)."""

    kind: str
    target: str | None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"


def parse_mirror(raw: Any, where: str) -> MirrorSpec:
    """Parse and check one spec; path targets become absolute (relative to this process's directory).

    Raises:
        UsageError: the spec is not a string, names an unknown kind, or lacks a target its kind needs.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise UsageError(f"{where}: a mirror is a non-empty string such as 'tensorboard:/path', not {raw!r}")
    kind, sep, target = raw.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in MIRROR_KINDS:
        choices = ", ".join(f"'{k}' ({v})" for k, v in MIRROR_KINDS.items())
        raise UsageError(f"{where}: unknown mirror kind {kind!r} in {raw!r}; use one of {choices}")
    value = target.strip() if sep else ""
    if not value:
        if kind in _REQUIRED_TARGET:
            raise UsageError(f"{where}: mirror {raw!r} needs a target, e.g. '{kind}:/path' ({MIRROR_KINDS[kind]})")
        return MirrorSpec(kind, None)
    if kind in _PATH_KINDS or (kind == "mlflow" and "://" not in value and not value.startswith("file:")):
        value = os.path.abspath(os.path.expanduser(value))
    return MirrorSpec(kind, value)


def parse_mirrors(raw: Any, where: str) -> list[MirrorSpec]:
    """Parse a list of specs (or one string; a string may hold several separated by commas), dropping repeats.

    Raises:
        UsageError: one of the specs is invalid (see :func:`parse_mirror`).
    """
    if raw is None:
        return []
    if isinstance(raw, str):
        items: list[Any] = [part for part in raw.split(",") if part.strip()]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise UsageError(f"{where}: give a list of mirror strings such as ['tensorboard:/path'], not {raw!r}")
    specs: list[MirrorSpec] = []
    for item in items:
        spec = parse_mirror(item, where)
        if spec not in specs:
            specs.append(spec)
    return specs
