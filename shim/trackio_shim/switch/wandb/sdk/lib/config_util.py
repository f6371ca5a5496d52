"""``wandb.sdk.lib.config_util`` under the switch: ``ConfigError`` (transformers catches it)."""

from trackio_shim.errors import ConfigError

__all__ = ["ConfigError"]
