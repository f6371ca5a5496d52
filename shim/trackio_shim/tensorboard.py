"""``wandb.tensorboard``: :func:`patch` makes the runs started afterwards get what SummaryWriters write.

``init(sync_tensorboard=True)`` does the same for one run. See docs/integrations.md, "TensorBoard".
"""

from __future__ import annotations

from trackio_shim.sdk.tensorboard import patch, unpatch

__all__ = ["patch", "unpatch"]
