"""The mirror interface, what a mirror is given, and the state ``trackiod status`` shows for each mirror."""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from trackio_shim.errors import MirrorError
from trackio_shim.mirror_spec import MirrorSpec

#: kind -> "module:class" of its backend, imported only when a mirror of that kind opens.
BACKENDS = {
    "tensorboard": "trackiod.mirrors.tensorboard:TensorBoardMirror",
    "csv": "trackiod.mirrors.csv:CsvMirror",
    "mlflow": "trackiod.mirrors.mlflow:MlflowMirror",
    "wandb": "trackiod.mirrors.wandb:WandbMirror",
}


@dataclass
class RunInfo:
    """The run a mirror copies."""

    run_id: int
    project: str
    run_key: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{self.project}/{self.run_key}"


@dataclass
class Series:
    """Committed values of one numeric key, in arrival order (a later value for a step wins, as in the store)."""

    key: str
    steps: np.ndarray
    times: np.ndarray
    values: np.ndarray


@dataclass
class MirrorBatch:
    """What one or more commits made durable for one run: numeric series and text values."""

    series: list[Series] = field(default_factory=list)
    texts: list[tuple[str, int, float, str]] = field(default_factory=list)  # (key, step, time, value)

    @property
    def points(self) -> int:
        return sum(int(s.steps.size) for s in self.series) + len(self.texts)

    def extend(self, other: MirrorBatch) -> None:
        self.series.extend(other.series)
        self.texts.extend(other.texts)

    def rows(self) -> Iterator[tuple[int, float, dict[str, Any]]]:
        """``(step, time, {key: value})`` per step, steps ascending: for SDKs that log one row at a time."""
        by_step: dict[int, tuple[float, dict[str, Any]]] = {}
        for s in self.series:
            for step, ts, value in zip(s.steps.tolist(), s.times.tolist(), s.values.tolist()):
                row = by_step.setdefault(step, (ts, {}))
                row[1][s.key] = value
        for key, step, ts, text in self.texts:
            by_step.setdefault(step, (ts, {}))[1][key] = text
        for step in sorted(by_step):
            ts, values = by_step[step]
            yield step, ts, values


class Mirror(ABC):
    """One mirror of one run. Every method runs on the mirror thread; any exception is caught and counted there.

    ``target`` is the spec's target. ``daemon_wide`` says it came from TRACKIOD_MIRRORS, where a path target
    is a root shared by every run (each run gets ``<root>/<project>/<run id>``); from ``init(mirror=...)`` a
    path target is this run's own place.
    """

    kind: ClassVar[str]

    def __init__(self, target: str | None, run: RunInfo, daemon_wide: bool) -> None:
        self.target = target
        self.run = run
        self.daemon_wide = daemon_wide

    @abstractmethod
    def open(self) -> None:
        """Create or resume the run in the other tracker.

        Raises:
            MirrorError: the SDK is missing or the target can never work (the mirror is then ``failed``).
        """

    @abstractmethod
    def write(self, batch: MirrorBatch) -> None:
        """Copy committed values; an exception keeps the batch for a later retry."""

    @abstractmethod
    def update_config(self, items: dict[str, Any]) -> None:
        """Config keys set after the start (``wandb.config.update``)."""

    @abstractmethod
    def close(self, state: str | None) -> None:
        """The run ended (``finished``, ``failed``, ``crashed``), or None when the daemon stops during the run."""

    def run_dir(self) -> str:
        """The directory of a path target: the target itself, or ``<target>/<project>/<run id>`` daemon-wide."""
        assert self.target is not None
        if self.daemon_wide:
            return os.path.join(self.target, self.run.project, self.run.run_key)
        return self.target


def import_sdk(kind: str, module: str) -> Any:
    """Import a mirror's SDK, turning its absence into a :class:`MirrorError` that says what to install.

    Raises:
        MirrorError: the module cannot be imported in the daemon's environment.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MirrorError(
            f"the {kind} mirror needs the {module.split('.')[0]} package in the daemon's environment "
            f"(pip install 'trackiod[integrations]'; then restart trackiod): {exc}"
        ) from None


def create(spec: MirrorSpec, run: RunInfo, daemon_wide: bool) -> Mirror:
    """A backend instance for ``spec`` (its module imported now; its SDK only at ``open()``)."""
    module_name, _, class_name = BACKENDS[spec.kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    mirror: Mirror = cls(spec.target, run, daemon_wide)
    return mirror


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as ``{"a.b": value}``, for trackers whose parameters are flat."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_config(value, name + "."))
        else:
            out[name] = value
    return out


@dataclass
class MirrorState:
    """What ``trackiod status`` shows for one mirror of one run."""

    run: str
    spec: str
    origin: str  # "run" (init(mirror=...)) or "daemon" (TRACKIOD_MIRRORS)
    state: str = "starting"  # starting, ok, failing (retrying), failed (gave up), closed
    points: int = 0
    dropped: int = 0
    pending: int = 0
    errors: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
