"""accelerate: ``Accelerator(log_with=[TrackiodTracker(project=...)])``. Imports accelerate when imported.

Logs from the main process only (accelerate's own notion of it). Register the tracker for checkpointing
(``accelerator.register_for_checkpointing(tracker)``) and ``accelerator.load_state(...)`` re-attaches a
restored job to the same run and step. See docs/integrations.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from accelerate.tracking import GeneralTracker

from trackio_shim.integrations._base import TrackedRun, process_rank

if TYPE_CHECKING:
    from trackio_shim.sdk.wandb_run import Run


def _is_main_process() -> bool:
    try:
        from accelerate.state import PartialState

        return bool(PartialState().is_main_process)
    except Exception:  # no accelerate state could be built: fall back to the launcher's environment
        return process_rank() == 0


class TrackiodTracker(GeneralTracker):  # type: ignore[misc]
    """An accelerate tracker that logs to trackiod; ``init_kwargs`` go to ``trackio_shim.init()``."""

    name = "trackiod"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, project: str | None = None, run_name: str | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        self.tracked = TrackedRun(project, run_name, is_main=_is_main_process, **init_kwargs)

    @property
    def tracker(self) -> Run | None:
        """The trackio_shim run (started now if needed); None off the main process."""
        return self.tracked.get()

    def start(self) -> None:
        """Called by ``init_trackers``; the run itself starts at the first log, so a restore can come first."""

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """Record the hyperparameters given to ``init_trackers(config=...)``."""
        self.tracked.update_config(values)

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Log ``values`` at ``step`` (or the run's next step)."""
        self.tracked.log(values, step)

    def finish(self) -> None:
        """Finish the run (``accelerator.end_training()``)."""
        self.tracked.finish()

    def state_dict(self) -> dict[str, Any]:
        return self.tracked.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tracked.load_state_dict(state)
