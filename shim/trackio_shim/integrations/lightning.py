"""PyTorch Lightning: ``Trainer(logger=TrackiodLogger(project=...))``. Imports Lightning when imported.

Works with the ``pytorch_lightning`` package, or with ``lightning`` (``lightning.pytorch``) when that is
the one installed. Logs from global rank 0 only (Lightning's ``rank_zero_only``). ``name`` is the project,
``version`` the run id, ``experiment`` the trackio_shim run. See docs/integrations.md.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

try:
    from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment  # type: ignore[attr-defined]
    from pytorch_lightning.utilities.rank_zero import rank_zero_only  # type: ignore[attr-defined]
except ImportError:  # the unified "lightning" package
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment  # type: ignore[no-redef]
    from lightning.pytorch.utilities.rank_zero import rank_zero_only  # type: ignore[no-redef]

from trackio_shim.integrations._base import TrackedRun
from trackio_shim.sdk.wandb_run import Run


def _is_rank_zero() -> bool:
    return int(getattr(rank_zero_only, "rank", 0) or 0) == 0


class TrackiodLogger(Logger):
    """A Lightning logger writing to trackiod; ``init_kwargs`` go to ``trackio_shim.init()``."""

    def __init__(self, project: str | None = None, name: str | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        self.tracked = TrackedRun(project, name, is_main=_is_rank_zero, **init_kwargs)

    @property
    def name(self) -> str | None:
        """The project (Lightning's experiment name)."""
        run = self.tracked._run
        return run.project if run is not None else self.tracked.project

    @property
    def version(self) -> str | None:
        """The run id. Reading it starts the run if none has started (Lightning names checkpoint folders with
        it before the first log); once a run has started, even a finished one, it is only read, never re-opened."""
        run = self.tracked.last or self.tracked.get()
        return run.id if run is not None else None

    @property
    @rank_zero_experiment
    def experiment(self) -> Run | None:
        """The trackio_shim run."""
        return self.tracked.get()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.tracked.log({k: _scalar(v) for k, v in metrics.items()}, step)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        self.tracked.update_config(params)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the run: ``success`` as finished, anything else (``failed``) as failed."""
        self.tracked.finish(0 if status == "success" else 1)

    def state_dict(self) -> dict[str, Any]:
        return self.tracked.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tracked.load_state_dict(state)


def _scalar(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "numel", lambda: 1)() == 1 else value
