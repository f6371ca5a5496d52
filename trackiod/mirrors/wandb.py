"""wandb mirror: one wandb run per trackiod run, same id, name and config, logged step by step.

The wandb SDK runs in the daemon, so its network calls, retries and ``finish()`` never touch the training
loop. Its mode, directory and credentials come from the daemon's environment (``WANDB_MODE``, ``WANDB_DIR``,
``WANDB_API_KEY``, ...). The target, if given, is the wandb project; by default the trackiod project.
wandb drops a step lower than one it has already seen; trackiod keeps it locally either way.
"""

from __future__ import annotations

from typing import Any

from trackiod.mirrors.base import Mirror, MirrorBatch, import_sdk

_EXIT_CODES = {"finished": 0, "failed": 1, "crashed": 1}


class WandbMirror(Mirror):
    kind = "wandb"

    def open(self) -> None:
        wandb = import_sdk("wandb", "wandb")
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_machine_info=True)
        self._run = wandb.init(
            project=self.target or self.run.project,
            id=self.run.run_key,
            name=self.run.name,
            config=self.run.config,
            resume="allow",
            reinit="create_new",
            settings=settings,
        )

    def write(self, batch: MirrorBatch) -> None:
        for step, _, row in batch.rows():
            self._run.log(row, step=step)

    def update_config(self, items: dict[str, Any]) -> None:
        self._run.config.update(items, allow_val_change=True)

    def close(self, state: str | None) -> None:
        self._run.finish(exit_code=_EXIT_CODES.get(state or "finished", 0))
