"""``wandb.sdk.wandb_run`` under the switch."""

from trackio_shim.sdk.wandb_run import Run

__all__ = ["Run"]
