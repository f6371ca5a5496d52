"""Counting the torch calls a piece of shim code makes (kernels and views), for tests that check work does not
grow with the number of tensors (no timed assertions: the count is the same on any machine)."""

from __future__ import annotations

from typing import Any

import torch


class TensorOps(torch.overrides.TorchFunctionMode):
    """Counts the torch calls that make a tensor (kernels and views) while it is active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        made = out[0] if isinstance(out, tuple) and out else out  # unbind, split: one call, several views
        if isinstance(made, torch.Tensor):
            self.made.append(getattr(func, "__name__", str(func)))
        return out
