"""``wandb.errors`` under the switch: wandb's error names on trackio_shim's one hierarchy."""

from trackio_shim.errors import CommError, UsageError
from trackio_shim.errors import TrackiodError as Error

__all__ = ["CommError", "Error", "UsageError"]
