"""``wandb.wandb_run`` under the switch (Lightning imports ``Run`` from here)."""

from trackio_shim.sdk.wandb_run import Run

__all__ = ["Run"]
