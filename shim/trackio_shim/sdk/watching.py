"""``watch(model)``: histograms of gradients and parameters every ``log_freq`` training steps, as wandb.watch.

(Named watching, not watch, so that the module never shadows the package's ``watch()`` function.)

A forward hook counts the model's training forward passes. On every ``log_freq``-th one (the first included)
the parameter histograms are logged, and the gradient hooks log the gradients of the backward pass that
follows. Histograms are computed on the tensors' own device and copied deferred, like any tensor histogram;
they are logged with ``commit=False``, so they land on the run's current step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trackio_shim.errors import UsageError

_WHAT = {"gradients": (True, False), "parameters": (False, True), "all": (True, True), None: (False, False)}


class Watch:
    """The hooks watch() put on one model; :meth:`remove` takes them off."""

    def __init__(
        self, log_values: Callable[..., None], model: Any, log: str | None, log_freq: int, num_bins: int = 64
    ) -> None:
        """``log_values``: the run's log(), called with ``commit=False``."""
        if log not in _WHAT:
            raise UsageError(f"watch(log={log!r}): use 'gradients', 'parameters', 'all' or None")
        if not hasattr(model, "register_forward_hook") or not hasattr(model, "named_parameters"):
            raise UsageError(f"watch() takes a torch.nn.Module, not {type(model).__name__}")
        if type(log_freq) is not int or log_freq < 1:
            raise UsageError(f"watch(log_freq={log_freq!r}): use a positive int")
        self.log_values = log_values
        self.model = model
        self.log_freq = log_freq
        self.num_bins = num_bins
        self.gradients, self.parameters = _WHAT[log]
        self.passes = 0
        self._due = False
        self._handles: list[Any] = [model.register_forward_hook(self._on_forward)]
        if self.gradients:
            for name, param in model.named_parameters():
                if param.requires_grad:
                    self._handles.append(param.register_hook(self._grad_hook(name)))

    def _on_forward(self, module: Any, inputs: Any, output: Any) -> None:
        if not module.training:
            return
        self._due = self.passes % self.log_freq == 0
        self.passes += 1
        if self._due and self.parameters:
            from trackio_shim.media import Histogram

            self.log_values(
                {f"parameters/{name}": Histogram(p, num_bins=self.num_bins) for name, p in module.named_parameters()},
                commit=False,
            )

    def _grad_hook(self, name: str) -> Any:
        def hook(grad: Any) -> None:
            if self._due and grad is not None:
                from trackio_shim.media import Histogram

                self.log_values({f"gradients/{name}": Histogram(grad, num_bins=self.num_bins)}, commit=False)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
