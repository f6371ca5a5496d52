"""``wandb.sdk`` under the switch: the submodules integrations import from (``lib``, ``wandb_run``)."""

from trackio_shim.switch.wandb.sdk import lib, wandb_run

__all__ = ["lib", "wandb_run"]
