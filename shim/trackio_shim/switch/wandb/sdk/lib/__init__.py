"""``wandb.sdk.lib`` under the switch: ``RunDisabled``, the run ``init(mode="disabled")`` returns (Lightning)."""

from trackio_shim.sdk.wandb_run import DisabledRun as RunDisabled
from trackio_shim.switch.wandb.sdk.lib import config_util

__all__ = ["RunDisabled", "config_util"]
