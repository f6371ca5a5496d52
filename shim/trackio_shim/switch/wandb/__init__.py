"""``import wandb`` under the switch (trackio_shim.switch): trackio_shim with wandb's names and wandb's rules.

Every name trackio_shim exports is here, looked up there on first use (``wandb.run``, ``wandb.config`` and
``wandb.summary`` on every use, so they always show the current run). Defined here: what wandb has and
trackio_shim does not name, and :func:`init` with wandb's rule for resuming: by id only, so a run given a name
and ``resume="allow"`` but no id is a new run (Lightning's WandbLogger passes exactly that for every fit).
``resume_by="name"`` (or ``TRACKIOD_RESUME_BY=name``) resumes the newest run of that name instead.
"""

from __future__ import annotations

import os
from typing import Any

import trackio_shim
from trackio_shim import define_metric, finish, log, mark_preempting, require, save, setup, watch
from trackio_shim.errors import UsageError
from trackio_shim.sdk.terminal import termerror, termlog, termwarn
from trackio_shim.sdk.wandb_run import Run
from trackio_shim.switch import delegate, facade_version

__version__ = facade_version("wandb")
__all__ = [
    "define_metric",
    "finish",
    "init",
    "log",
    "mark_preempting",
    "require",
    "save",
    "setup",
    "termerror",
    "termlog",
    "termwarn",
    "watch",
]


def __getattr__(name: str) -> Any:
    return delegate(__name__, globals(), name)


def init(**kwargs: Any) -> Run:
    """``wandb.init``: trackio_shim.init() with wandb's rule for resuming (by id; see the module's docstring)."""
    kwargs.setdefault("resume_by", os.environ.get("TRACKIOD_RESUME_BY") or "id")
    return trackio_shim.init(**kwargs)


def _attach(attach_id: str | None = None, run_id: str | None = None, **kwargs: Any) -> Run:
    """Log to a run another process started (Lightning's ddp_spawn hands ``run._attach_id`` to its workers).

    Raises:
        UsageError: no run named, or the daemon has no such run.
    """
    path = attach_id or run_id
    if not path:
        raise UsageError("wandb._attach() needs the attach_id of a run (run._attach_id)")
    project, _, run_key = str(path).rpartition("/")
    # This process is one worker logging for the whole job: it joins the run by id, not as a rank of its own.
    return trackio_shim.init(
        project=project or None, id=run_key, resume="must", reinit="create_new", rank=0, world_size=1
    )
