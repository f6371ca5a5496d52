"""``watch(model)``: histograms of gradients and parameters every ``log_freq`` training steps, as wandb.watch.

(Named watching, not watch, so that the module never shadows the package's ``watch()`` function.)

A forward hook counts the model's training forward passes. On every ``log_freq``-th one (the first included)
the parameter histograms are logged, and the gradient hooks collect the gradients of the backward pass that
follows; they are logged together when that pass ends (a callback queued on autograd's engine). Histograms are
computed on the tensors' own device, all of a pass's at once (trackio_shim.media.tensors.HistogramBatches:
a few segment-wise kernels per device instead of about twenty-five per parameter), and copied deferred like
any tensor histogram: one log() call each for the parameters and for the gradients, so one joined copy, one
pool buffer and one event per device each, however many parameters the model has. The gradient hooks keep
each gradient until the pass ends (on a watched step autograd may then copy a gradient into ``.grad``
instead of reusing its memory). They are logged with ``commit=False``, so they land on the run's current
step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trackio_shim.errors import UsageError

if TYPE_CHECKING:
    from trackio_shim.media.tensors import HistogramBatches

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
        self._batches: HistogramBatches | None = None
        from trackio_shim.media import MAX_BINS

        if type(num_bins) is int and 1 <= num_bins <= MAX_BINS:  # else each Histogram names the problem
            from trackio_shim.media.tensors import HistogramBatches

            self._batches = HistogramBatches(num_bins)
        self.gradients, self.parameters = _WHAT[log]
        self.passes = 0
        self._due = False
        # Gradient histograms of the current backward pass, and whether their flush is queued; the hooks may
        # run on autograd's per-device threads, hence the lock.
        self._grads: dict[str, Any] = {}
        self._flush_queued = False
        self._grads_lock = threading.Lock()
        self._handles: list[Any] = [model.register_forward_hook(self._on_forward)]
        if self.gradients:
            for name, param in model.named_parameters():
                if param.requires_grad:
                    self._handles.append(param.register_hook(self._grad_hook(name)))

    def _on_forward(self, module: Any, inputs: Any, output: Any) -> None:
        if not module.training:
            return
        self._flush_gradients()  # left by a backward pass that raised before its end: logged, not lost
        self._due = self.passes % self.log_freq == 0
        self.passes += 1
        if self._due and self.parameters:
            self.log_values(self._histograms(dict(module.named_parameters()), "parameters/"), commit=False)

    def _histograms(self, tensors: dict[str, Any], prefix: str) -> dict[str, Any]:
        """One pass's histograms, computed together; a tensor the batch does not take gets its own."""
        from trackio_shim.media import Histogram

        batched = self._batches.compute(list(tensors.values())) if self._batches is not None else []
        histograms = {}
        for i, (name, tensor) in enumerate(tensors.items()):
            bins = batched[i] if batched else None
            histograms[prefix + name] = (
                Histogram(tensor, num_bins=self.num_bins)
                if bins is None
                else Histogram.from_device_bins(bins, self.num_bins)
            )
        return histograms

    def _grad_hook(self, name: str) -> Any:
        def hook(grad: Any) -> None:
            if self._due and grad is not None:
                with self._grads_lock:
                    self._grads[name] = grad  # no graph of its own (unless create_graph): the batch runs without one
                    queue, self._flush_queued = not self._flush_queued, True
                if queue:
                    self._queue_flush()

        return hook

    def _queue_flush(self) -> None:
        """Log the collected gradients once this backward pass ends (autograd's final callbacks)."""
        import torch

        try:
            torch.autograd.Variable._execution_engine.queue_callback(self._flush_gradients)
        except (AttributeError, RuntimeError):  # no engine callback here (another torch): log what we have now
            self._flush_gradients()

    def _flush_gradients(self) -> None:
        with self._grads_lock:
            grads, self._grads, self._flush_queued = self._grads, {}, False
        if grads:
            self.log_values(self._histograms(grads, "gradients/"), commit=False)

    def remove(self) -> None:
        self._flush_gradients()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
