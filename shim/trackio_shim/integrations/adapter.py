"""For trainers with their own logger protocol: ``log_metrics(metrics, step)``, ``log_hyperparams(params)``,
``finish()``; and :class:`LoggerGroup`, several such loggers given as one.

No framework is imported. Use :class:`TrackiodLogger` wherever a trainer takes an object with those three
methods (many small trainers and research codebases do); see docs/integrations.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trackio_shim.integrations._base import TrackedRun
from trackio_shim.sdk.wandb_run import Run


class TrackiodLogger:
    """A logger for the common ``log_metrics / log_hyperparams / finish`` protocol, logging from rank 0 only.

    The run starts at the first call (so :meth:`load_state_dict` from a checkpoint can come first) with the
    given ``project``, ``name`` and any other ``init()`` keyword (``config``, ``tags``, ``mirror``, ...).
    ``state_dict()`` / ``load_state_dict()`` let a restored job continue the same run and step.
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        is_main: Callable[[], bool] | None = None,
        **init_kwargs: Any,
    ) -> None:
        self.tracked = TrackedRun(project, name, is_main=is_main, **init_kwargs)

    @property
    def run(self) -> Run | None:
        """The run (started now if needed); None on a process other than the main one."""
        return self.tracked.get()

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log a dict of values, at ``step`` or at the run's next step."""
        self.tracked.log(metrics, step)

    def log_hyperparams(self, params: Any) -> None:
        """Record hyperparameters (a dict or an argparse.Namespace) in the run's config."""
        self.tracked.update_config(params)

    def finish(self, exit_code: int = 0) -> None:
        """Finish the run (a no-op for a run this logger did not start)."""
        self.tracked.finish(exit_code)

    def state_dict(self) -> dict[str, Any]:
        """What to save in a checkpoint to re-attach to this run later."""
        return self.tracked.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Re-attach to the run saved in ``state``; the next log continues at the saved step."""
        self.tracked.load_state_dict(state)


class LoggerGroup:
    """Several loggers with the ``log_metrics / log_hyperparams / finish`` protocol, given to a trainer as one.

    Every call goes to every logger, in order. If one raises, the others still get the call and the first
    error is raised afterwards: a broken logger neither hides its error nor starves the others.
    """

    def __init__(self, loggers: Sequence[Any]) -> None:
        self.loggers = list(loggers)

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        first: BaseException | None = None
        for logger in self.loggers:
            target = getattr(logger, method, None)
            if target is None:
                continue
            try:
                target(*args, **kwargs)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._each("log_metrics", metrics, step)

    def log_hyperparams(self, params: Any) -> None:
        self._each("log_hyperparams", params)

    def finish(self, *args: Any, **kwargs: Any) -> None:
        self._each("finish", *args, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """The states of the loggers that have one, by position."""
        return {str(i): lg.state_dict() for i, lg in enumerate(self.loggers) if hasattr(lg, "state_dict")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for i, logger in enumerate(self.loggers):
            if str(i) in state and hasattr(logger, "load_state_dict"):
                logger.load_state_dict(state[str(i)])


def as_logger(loggers: Any) -> Any:
    """One logger from one logger or a list of them (a :class:`LoggerGroup`)."""
    if isinstance(loggers, (list, tuple)):
        return loggers[0] if len(loggers) == 1 else LoggerGroup(loggers)
    return loggers
