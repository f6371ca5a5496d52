"""What every integration shares: main-process semantics and a run that can be checkpointed and restored."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trackio_shim._warn import warn_once
from trackio_shim.errors import UsageError
from trackio_shim.sdk.ranks import process_rank
from trackio_shim.sdk.run_config import as_mapping
from trackio_shim.sdk.wandb_run import Run

STATE_VERSION = 1

__all__ = ["TrackedRun", "process_rank"]


class TrackedRun:
    """A run started on first use, from the main process only, that can be saved in and restored from a checkpoint.

    On any other process every method is a cheap no-op. If a run is already active in this process (the
    script called ``trackio_shim.init()`` itself), it is used and left open at the end, as wandb's
    integrations do. ``state_dict()`` and ``load_state_dict()`` make a job restored from a checkpoint
    re-attach to the same run and step instead of starting a new run.
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        is_main: Callable[[], bool] | None = None,
        **init_kwargs: Any,
    ) -> None:
        self.project = project
        self.name = name
        self.init_kwargs = init_kwargs
        self._is_main = is_main or (lambda: process_rank() == 0)
        self._config: dict[str, Any] = dict(config or {})
        self._run: Run | None = None
        self._owned = False
        self._restore: dict[str, Any] | None = None

    @property
    def is_main(self) -> bool:
        return self._is_main()

    @property
    def last(self) -> Run | None:
        """The run this object started or adopted last, finished or not; never starts one."""
        return self._run

    def get(self) -> Run | None:
        """The run, started now if needed; None on a process other than the main one."""
        if self._run is not None and not self._run._finished:
            return self._run
        if not self.is_main:
            return None
        self._run = self._start()
        return self._run

    def _start(self) -> Run:
        from trackio_shim import init
        from trackio_shim.sdk import active as active_runs

        restore, self._restore = self._restore, None
        active = active_runs.latest()
        if restore is None and self._run is None and active is not None and not active._finished:
            self._owned = False
            if self._config:
                active.config.update(self._config, allow_val_change=True)
            return active
        if restore is not None:
            open_here = _open_run(restore["project"], restore["id"])
            if open_here is not None:  # left open by an earlier trainer of this process: continue it
                self._owned = True
                if self._config:
                    open_here.config.update(self._config, allow_val_change=True)
                if restore.get("step") is not None:
                    open_here._step = int(restore["step"])
                return open_here
        kwargs: dict[str, Any] = {"reinit": "create_new", **self.init_kwargs}
        if restore is not None:
            kwargs.update(project=restore["project"], id=restore["id"], resume="allow")
        elif self._run is not None:  # finished earlier (train end), used again (evaluate after training)
            kwargs.update(project=self._run.project, id=self._run.id, resume="allow")
        else:
            kwargs.setdefault("project", self.project)
            kwargs.setdefault("name", self.name)
        kwargs["config"] = {**dict(kwargs.get("config") or {}), **self._config}
        run = init(**kwargs)
        self._owned = True
        if restore is not None and restore.get("step") is not None:
            # The checkpoint's step, not the run's last one: the steps trained again after the restore
            # overwrite the values logged after that checkpoint, so the history matches the model.
            run._step = int(restore["step"])
        return run

    def update_config(self, values: Any) -> None:
        """Merge hyperparameters (a dict or a Namespace); later values win, as a trainer's own config would."""
        if not self.is_main:
            return
        items = as_mapping(values, "hyperparameters")
        self._config.update(items)
        if self._run is not None and not self._run._finished:
            self._run.config.update(items, allow_val_change=True)

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        run = self.get()
        if run is not None:
            run.log(dict(values), step=step)

    def finish(self, exit_code: int = 0) -> None:
        run = self._run
        if run is not None and self._owned and not run._finished:
            run.finish(exit_code=exit_code)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to re-attach to this run: project, id, name and the next step."""
        run = self._run
        if run is None:
            return dict(self._restore or {})
        return {"version": STATE_VERSION, "project": run.project, "id": run.id, "name": run.name, "step": run.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Re-attach to the run a checkpoint was saved from; its next log continues at the saved step.

        Raises:
            UsageError: ``state`` is not what :meth:`state_dict` returns.
        """
        if not isinstance(state, Mapping):
            raise UsageError(f"load_state_dict() takes the dict state_dict() returned, not {type(state).__name__}")
        if not state:
            return  # saved before the run started (or on another rank): nothing to re-attach to
        for key in ("project", "id"):
            if not isinstance(state.get(key), str) or not state[key]:
                raise UsageError(f"load_state_dict(): the state has no {key!r}; pass what state_dict() returned")
        step = state.get("step")
        if step is not None and (not isinstance(step, int) or step < 0):
            raise UsageError(f"load_state_dict(): 'step' must be a non-negative int, not {step!r}")
        restore = dict(state)
        run = self._run
        if run is not None and not run._finished:
            if (run.project, run.id) == (restore["project"], restore["id"]):
                if step is not None:
                    run._step = step
                return
            if self._owned:
                warn_once(
                    ("restore-switch", run.id),
                    f"trackio_shim: restoring a checkpoint of run {restore['project']}/{restore['id']}; "
                    f"finishing run {run.path}, started before the restore",
                )
                run.finish()
        self._run = None
        self._restore = restore


def _open_run(project: str, run_id: str) -> Run | None:
    """The run of this process with that project and id that is still open, if any."""
    from trackio_shim.sdk import active

    for run in active.runs():
        if (run.project, run.id) == (project, run_id) and not run._finished:
            return run
    return None
