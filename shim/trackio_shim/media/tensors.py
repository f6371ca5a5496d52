"""Tensors in log() without a device sync: each device value staged for a deferred copy to the host.

``log({"loss": loss})`` with a CUDA tensor must not wait for the GPU. This module turns a tensor into a
:class:`~trackio_shim.session.deferred.Staged` copy (a scalar widened on its device, a histogram computed on
its device, a whole array) together with how its host copy becomes a value; the session's
:class:`~trackio_shim.session.deferred.DeferredCopies` makes the copies and sends the values once the device
is done. torch is imported only once a tensor has been passed in: callers check ``type(value).__module__``
first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trackio_shim.errors import MediaError
from trackio_shim.session.deferred import Staged

#: Host dtypes numpy can hold; anything else (bfloat16, float8) is widened to float32 on the device first.
_HOST_DTYPES = {
    "bool",
    "uint8",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
}


def is_tensor(value: Any) -> bool:
    """True for a torch.Tensor (torch is already imported when this can be true)."""
    if not type(value).__module__.startswith("torch"):
        return False
    import torch

    return isinstance(value, torch.Tensor)


def dtype_name(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def check_real(tensor: Any, what: str) -> None:
    """Raise :class:`MediaError` unless ``tensor`` holds real numbers or bools."""
    if tensor.is_complex() or tensor.is_quantized:  # two attribute reads: this runs once per tensor logged
        raise MediaError(f"{what} of dtype {dtype_name(tensor)} is not supported; log its .real / .abs() instead")


def _scalar_value(integral: bool) -> Callable[[Any], tuple[bool, Any]]:
    def finish(host: list[float]) -> tuple[bool, Any]:
        value = float(host[0])
        return False, int(value) if integral and value.is_integer() else value

    return finish


def stage_scalar(key: str, tensor: Any) -> Staged:
    """A one-element tensor on a device, as a flat view; the deferred queue widens the call's scalars to float64
    on their device together (asynchronous kernels, no sync).

    (A CPU one is logged as its ``.item()`` before it gets here, unless it is a subclass of torch.Tensor.)
    """
    check_real(tensor, "a tensor")
    integral = not tensor.is_floating_point()
    source = tensor.detach().reshape(1)
    return Staged(key, source, True, _scalar_value(integral))


def histogram_on_device(tensor: Any, num_bins: int) -> Any:
    """Counts in ``num_bins`` equal bins between the finite min and max, then min and max: one flat float64
    tensor of ``num_bins + 2`` values, computed on the tensor's device without a host sync.

    Non-finite values are left out, as numpy.histogram of the finite values would.

    Raises:
        MediaError: the tensor is empty or not real-valued.
    """
    import torch

    check_real(tensor, "a histogram of a tensor")
    if tensor.numel() == 0:
        raise MediaError("a histogram needs at least one value; the tensor is empty")
    x = tensor.detach().reshape(-1)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(work)
    finite = torch.isfinite(x)
    lo = torch.where(finite, x, torch.inf).amin()
    hi = torch.where(finite, x, -torch.inf).amax()
    span = hi - lo
    scale = num_bins / torch.where(span > 0, span, torch.ones_like(span))
    index = torch.nan_to_num((x - lo) * scale, nan=0.0, posinf=0.0, neginf=0.0).floor()
    index = index.clamp_(0, num_bins - 1).to(torch.int64)
    counts = torch.zeros(num_bins, dtype=torch.float64, device=x.device)
    counts.scatter_add_(0, index, finite.to(torch.float64))  # scatter_add, unlike bincount, never syncs
    return torch.cat((counts, lo.reshape(1).to(torch.float64), hi.reshape(1).to(torch.float64)))


#: Most values one batched histogram pass holds at once (its temporaries are a few times this size on the
#: device); a larger tensor is computed alone, as :func:`histogram_on_device` does.
BATCH_VALUES = 1 << 22


class HistogramBatches:
    """Many tensors' histograms at once, each equal to :func:`histogram_on_device`'s (watch() logs all of a
    model's parameters, or gradients, every ``log_freq`` steps).

    The tensors of one device and working dtype are flattened into one tensor (in chunks of at most
    :data:`BATCH_VALUES` values), and every per-tensor step becomes one segment-wise op over all of them:
    ``scatter_reduce`` for the minima and maxima, one bin index per value offset by its tensor's segment, one
    ``scatter_add`` for every count; so a pass costs about twenty kernels per chunk instead of about twenty-five
    per tensor, and its result is one ``(tensors, num_bins + 2)`` block whose rows the deferred queue joins into
    one copy. Each value goes through the same float operations as in the one-tensor path, so the counts and
    edges are the same. Tensors the batch does not take (complex, quantized, empty, not strided, subclasses,
    meta) are left to the one-tensor path, which names their problem.

    The segment of each value is built from the tensors' sizes copied to the device once per layout and kept
    (a model's parameters keep their shapes), so no pass waits for the device.
    """

    def __init__(self, num_bins: int) -> None:
        self.num_bins = num_bins
        self._segments: dict[tuple[Any, tuple[int, ...]], tuple[Any, Any, int]] = {}

    def compute(self, tensors: list[Any]) -> list[Any]:
        """For each tensor its ``num_bins + 2`` device values (as :func:`histogram_on_device` gives them), or None
        where the batch does not take it."""
        import torch

        results: list[Any] = [None] * len(tensors)
        chunks: dict[tuple[Any, Any], list[tuple[int, Any]]] = {}
        plain = (torch.Tensor, torch.nn.Parameter)
        for i, tensor in enumerate(tensors):
            if type(tensor) not in plain or tensor.layout is not torch.strided or tensor.is_meta:
                continue
            if tensor.is_complex() or tensor.is_quantized or tensor.numel() == 0:
                continue
            work = torch.float64 if tensor.dtype == torch.float64 else torch.float32
            chunks.setdefault((tensor.device, work), []).append((i, tensor))
        grad = torch.is_grad_enabled()
        if grad:
            torch._C._set_grad_enabled(False)
        try:
            for (device, work), members in chunks.items():
                chunk: list[tuple[int, Any]] = []
                size = 0
                for member in members:
                    numel = member[1].numel()
                    if chunk and size + numel > BATCH_VALUES:
                        self._chunk(chunk, device, work, results)
                        chunk, size = [], 0
                    chunk.append(member)
                    size += numel
                self._chunk(chunk, device, work, results)
        finally:
            if grad:
                torch._C._set_grad_enabled(True)
        return results

    def _chunk(self, chunk: list[tuple[int, Any]], device: Any, work: Any, results: list[Any]) -> None:
        import torch

        if len(chunk) == 1:
            place, tensor = chunk[0]
            results[place] = histogram_on_device(tensor, self.num_bins)
            return
        num_bins, count = self.num_bins, len(chunk)
        members = [t if t.dtype == work else t.to(work) for _, t in chunk]
        x = torch._C._nn.flatten_dense_tensors(members)  # one call, however many tensors: no view of each
        segment = self._segment(device, tuple(int(t.numel()) for t in members))
        finite = torch.isfinite(x)
        lo = torch.full((count,), torch.inf, dtype=work, device=device)
        lo.scatter_reduce_(0, segment, torch.where(finite, x, torch.inf), "amin")
        hi = torch.full((count,), -torch.inf, dtype=work, device=device)
        hi.scatter_reduce_(0, segment, torch.where(finite, x, -torch.inf), "amax")
        span = hi - lo
        scale = num_bins / torch.where(span > 0, span, torch.ones_like(span))
        low, scales = lo.index_select(0, segment), scale.index_select(0, segment)  # per value, its tensor's
        index = torch.nan_to_num((x - low) * scales, nan=0.0, posinf=0.0, neginf=0.0).floor()
        index = index.clamp_(0, num_bins - 1).to(torch.int64)
        index.add_(segment, alpha=num_bins)  # each tensor's bins after the tensor before's
        counts = torch.zeros(count * num_bins, dtype=torch.float64, device=device)
        counts.scatter_add_(0, index, finite.to(torch.float64))
        edges = torch.stack((lo, hi), dim=1).to(torch.float64)
        block = torch.cat((counts.view(count, num_bins), edges), dim=1)
        for (i, _), row in zip(chunk, block.unbind(0)):
            results[i] = row

    def _segment(self, device: Any, sizes: tuple[int, ...]) -> Any:
        """Each value's tensor number in a chunk of tensors of ``sizes``, built on the device without a sync: a
        one at each tensor's first value but the first, summed along (three kernels; ``repeat_interleave``
        costs several times as much on the CPU)."""
        import torch

        cached = self._segments.get((device, sizes))
        if cached is None:
            starts, total = [], 0
            for size in sizes[:-1]:
                total += size
                starts.append(total)
            host = torch.tensor(starts, dtype=torch.int64)
            cached = self._segments[(device, sizes)] = (host, host.to(device, non_blocking=True), total + sizes[-1])
        _, starts_on_device, total = cached  # the host tensor is kept alive while its copy may be in flight
        marks = torch.zeros(total, dtype=torch.int64, device=device)
        marks.index_fill_(0, starts_on_device, 1)
        return marks.cumsum_(0)


def histogram_payload(flat: list[float], num_bins: int) -> dict[str, Any]:
    """The wire form of a histogram from ``histogram_on_device``'s host copy, with numpy's edge conventions."""
    counts = [int(c) for c in flat[:num_bins]]
    lo, hi = flat[num_bins], flat[num_bins + 1]
    if not sum(counts):  # no finite value at all
        lo, hi = 0.0, 1.0
    elif hi <= lo:  # every value equal: numpy centres one unit around it and counts them in the middle bin
        total = sum(counts)
        counts = [0] * num_bins
        counts[num_bins // 2] = total
        lo, hi = lo - 0.5, lo + 0.5
    step = (hi - lo) / num_bins
    edges = [lo + i * step for i in range(num_bins)] + [hi]
    return {"_type": "histogram", "values": counts, "bins": edges}


def stage_histogram(key: str, device_bins: Any, num_bins: int) -> Staged:
    def finish(host: list[float]) -> tuple[bool, Any]:
        return True, histogram_payload(host, num_bins)

    return Staged(key, device_bins, True, finish)


def host_dtype_source(tensor: Any) -> Any:
    """``tensor`` detached, contiguous, in a dtype numpy can hold (bfloat16 and float8 become float32)."""
    import torch

    source = tensor.detach()
    if dtype_name(source) not in _HOST_DTYPES:
        source = source.to(torch.float32)
    return source.contiguous()


def stage_whole(key: str, tensor: Any, finish: Callable[[Any], tuple[bool, Any]]) -> Staged:
    """A whole tensor copied to a host tensor of its own (arrays, images)."""
    return Staged(key, host_dtype_source(tensor), False, finish)


def sync_now(staged: Staged) -> tuple[bool, Any]:
    """Resolve one staged value at once (``copy="sync"``): one blocking device-to-host copy."""
    host = staged.source.to("cpu")
    return staged.finish(host.tolist() if staged.pooled else host)
