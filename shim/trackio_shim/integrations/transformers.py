"""transformers: ``Trainer(..., callbacks=[TrackiodCallback(project=...)], report_to="none")``.

Imports transformers when imported. The run starts at train begin with the TrainingArguments and the
model's config, gets every ``on_log`` at the trainer's global step (``eval_*`` as ``eval/*``, ``test_*`` as
``test/*``, the rest as ``train/*``, as wandb's callback names them) and finishes at train end. Each
checkpoint folder gets a ``trackiod_run.json``; ``trainer.train(resume_from_checkpoint=...)`` then continues
the same run. The run stays open after training, as wandb's callback leaves it: a ``trainer.evaluate()`` or
``predict()`` afterwards logs to it at the steps after the last one (with ``train/global_step``), so it never
overwrites what training logged, and the run finishes at process exit, at :meth:`TrackiodCallback.finish` or
``trackio_shim.finish()``. See docs/integrations.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

from transformers import TrainerCallback

from trackio_shim.integrations._base import TrackedRun

STATE_FILE = "trackiod_run.json"
_PREFIXES = (("eval_", "eval/"), ("test_", "test/"))


def rewrite_logs(logs: dict[str, Any]) -> dict[str, Any]:
    """Trainer log keys as namespaced metric names: ``eval_loss`` -> ``eval/loss``, ``loss`` -> ``train/loss``."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        for prefix, namespace in _PREFIXES:
            if key.startswith(prefix):
                out[namespace + key[len(prefix) :]] = value
                break
        else:
            out["train/" + key] = value
    return out


class TrackiodCallback(TrainerCallback):
    """A TrainerCallback logging to trackiod from the world's main process; ``init_kwargs`` go to ``init()``."""

    def __init__(self, project: str | None = None, name: str | None = None, **init_kwargs: Any) -> None:
        self.tracked = TrackedRun(project, name, is_main=lambda: True, **init_kwargs)
        self._training = False

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._training = True
        saved = _checkpoint_state(args.output_dir, state.global_step) if state.global_step else None
        if saved is not None:
            self.tracked.load_state_dict(saved)
        model_config = getattr(model, "config", None)
        to_dict = getattr(model_config, "to_dict", None)
        config = dict(to_dict()) if callable(to_dict) else {}
        config.update(args.to_sanitized_dict())
        self.tracked.update_config(config)
        if self.tracked.name is None and args.run_name and args.run_name != args.output_dir:
            self.tracked.name = args.run_name
        self.tracked.get()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not (state.is_world_process_zero and logs):
            return
        if self._training:
            self.tracked.log(rewrite_logs(logs), step=state.global_step)
            return
        # After training (evaluate, predict): the step after the run's last one, so the values logged at the
        # final training step stay as training logged them; train/global_step says where the model was.
        run = self.tracked.get()
        if run is not None:
            run.log({**rewrite_logs(logs), "train/global_step": state.global_step}, step=run.step + 1)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            saved = self.tracked.state_dict()
            saved["step"] = state.global_step
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump(saved, f)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Training is over; the run stays open for evaluate() and predict() (see the module's docstring)."""
        if state.is_world_process_zero:
            self._training = False
            run = self.tracked.last
            if run is not None:
                run.flush()

    def finish(self, exit_code: int = 0) -> None:
        """Finish the run now rather than at process exit (a notebook that goes on after training)."""
        self.tracked.finish(exit_code)

    def state_dict(self) -> dict[str, Any]:
        return self.tracked.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracked.load_state_dict(state)


def _checkpoint_state(output_dir: str, step: int) -> dict[str, Any] | None:
    path = os.path.join(output_dir, f"checkpoint-{step}", STATE_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None
