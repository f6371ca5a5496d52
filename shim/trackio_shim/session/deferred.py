"""Log() calls waiting for their device values: deferred device-to-host copies from a bounded pool of host buffers.

``log({"loss": loss})`` with a CUDA tensor must not wait for the GPU. The call's scalars and histogram bins
on one device are joined there into one flat float64 tensor (the scalars with one ``torch.stack`` per dtype,
the bins with one ``torch.cat``, then widened: asynchronous kernels), copied with ``non_blocking=True`` into
one pinned host buffer taken from :class:`HostPool`, and one CUDA event is recorded on the device's current
stream: one copy, one event and one buffer per call and device, however many tensors the call holds. A
call's one-element tensors (:class:`Scalars`) cost no torch op of their own: they are handed in as they were
logged and stacked together, so each further one costs a list append and its share of one kernel. The call
waits in :class:`DeferredCopies` until its events have completed, then goes out as ordinary LOG / MEDIA
frames carrying the step and timestamp of the original ``log()`` call. Completion is polled without blocking
by later rich ``log()`` calls and by the session's pump thread, and forced by ``flush()``, ``finish()`` and
process exit. A bound on copies in flight applies back-pressure by waiting for the oldest call, never by
dropping.

This is transport, so it lives in the session: values wait here for their copies as frames wait in the
unacknowledged buffer for their ACK. What to copy and how a host copy becomes a value (a scalar, a histogram,
an array) is decided by the rich values, trackio_shim.media.tensors, which hands :class:`Staged` items in
(and trackio_shim.media.prepare, which hands in a call's :class:`Scalars`).

A one-element CPU tensor never comes here: its ``.item()`` waits for no device, so log() packs it as a number
(trackio_shim.session.encoding.scalar_place). CPU histograms and arrays take the very same path (pool, queue,
bound) with a marker that is complete at once, so the machinery is exercised wherever torch runs. torch is
imported only once a tensor has been passed in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from trackio_shim._warn import warn_once
from trackio_shim.errors import MediaError

#: ``emit(handle, step, timestamp, scalars, media)``: hand a resolved call to the session.
Emit = Callable[[int, int, float, dict[str, Any], dict[str, Any]], None]


class Ready:
    """The completion marker of a host-side copy: complete as soon as it is made."""

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        return None


READY = Ready()


class HostPool:
    """Reusable float64 host buffers (pinned for CUDA sources), keyed by capacity: a power of two, so that calls
    of nearby sizes share buffers.

    At most ``limit`` buffers are kept: one handed back while ``limit`` are alive is dropped, so the pool never
    holds more than the copies in flight allow (one call with more copies than ``limit`` may briefly exceed it).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free: dict[tuple[int, bool], list[Any]] = {}
        self.free_count = 0
        self.in_use = 0
        self.allocated = 0  # buffers ever created
        self.reused = 0  # takes served from the free lists

    @property
    def live(self) -> int:
        """Buffers alive now: handed out plus kept for reuse."""
        return self.in_use + self.free_count

    def take(self, numel: int, pinned: bool) -> Any:
        """A buffer of at least ``numel`` values (its first ``numel`` are the caller's)."""
        numel = 1 << max(numel - 1, 0).bit_length()
        free = self._free.get((numel, pinned))
        if free:
            buffer = free.pop()
            self.free_count -= 1
            self.reused += 1
        else:
            import torch

            buffer = torch.empty(numel, dtype=torch.float64, pin_memory=pinned)
            self.allocated += 1
        self.in_use += 1
        return buffer

    def give(self, buffer: Any, pinned: bool) -> None:
        self.in_use -= 1
        if self.in_use + self.free_count < self.limit:
            self._free.setdefault((int(buffer.numel()), pinned), []).append(buffer)
            self.free_count += 1


class Staged:
    """One device value waiting to be copied: a source tensor and how to turn its host copy into a value.

    ``pooled`` sources are flat tensors (histogram bins, and scalars that :class:`Scalars` does not take) joined
    with the call's others on the same device and copied into one pool buffer; ``finish`` then gets their values
    as a list of floats. The others (whole arrays and images) get a host tensor of their own, which ``finish``
    gets. ``finish`` returns ``(is_media, value)``.
    """

    __slots__ = ("finish", "host", "key", "pooled", "source", "span")

    def __init__(self, key: str, source: Any, pooled: bool, finish: Callable[[Any], tuple[bool, Any]]) -> None:
        self.key = key
        self.source = source
        self.pooled = pooled
        self.finish = finish
        self.host: Any = None  # a pooled value's _Batch until resolved, then its list of floats
        self.span = (0, 0)  # a pooled value's place in its batch


class Scalars:
    """One log() call's one-element tensors as logged: plain ``torch.Tensor``/``nn.Parameter``, real dtypes,
    strided (trackio_shim.session.encoding.real_scalar), on a device whose ``.item()`` would wait for it.

    No torch op per tensor: adding one is two list appends. The queue stacks them per device and dtype (one
    kernel each) when the call is submitted, so each further tensor in a call costs its share of that kernel.
    """

    __slots__ = ("keys", "tensors")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.tensors: list[Any] = []


class _Group:
    """Scalars of one call sharing a device and dtype, stacked into one flat tensor; read back as a span of
    their call's batch. ``integral`` values come back as ints where they are whole, as ``.item()`` gives them."""

    __slots__ = ("host", "integral", "keys", "source", "span")

    def __init__(self, keys: list[str], source: Any) -> None:
        self.keys, self.source = keys, source
        self.integral = not source.dtype.is_floating_point
        self.host: Any = None  # the call's _Batch
        self.span = (0, 0)


class _Batch:
    """One pool buffer holding the pooled values of one call on one device, read back once for all of them."""

    __slots__ = ("buffer", "count", "pinned", "values")

    def __init__(self, buffer: Any, count: int, pinned: bool) -> None:
        self.buffer, self.count, self.pinned = buffer, count, pinned
        self.values: list[float] | None = None


class _Call:
    """The deferred part of one log() call: its copies, its stacked scalars and one completion marker per
    device."""

    __slots__ = ("copies", "count", "groups", "handle", "markers", "step", "ts")

    def __init__(
        self, handle: int, step: int, ts: float, copies: list[Staged], groups: list[_Group], markers: list[Any]
    ) -> None:
        self.handle, self.step, self.ts, self.copies, self.groups, self.markers = (
            handle,
            step,
            ts,
            copies,
            groups,
            markers,
        )
        self.count = len(copies) + len(groups)  # copies in flight, as the bound counts them

    def ready(self) -> bool:
        return all(marker.query() for marker in self.markers)

    def wait(self) -> None:
        for marker in self.markers:
            marker.synchronize()


def _stack(tensors: list[Any]) -> Any:
    """Same-shaped one-element tensors of one device and dtype as one flat tensor: one kernel, no sync."""
    import torch

    joined = torch.stack(tensors)
    return joined if joined.dim() == 1 else joined.reshape(-1)


def _groups(scalars: Scalars) -> list[_Group]:
    """A call's scalars stacked per device and dtype (and shape: a 0-d and a ``(1,)`` tensor stack apart).

    The common call (every value of one dtype on one device) is stacked at once; torch refuses a stack across
    devices or shapes, and then the values are sorted out one by one. Dtypes are never mixed in one stack: its
    type promotion would turn an int64 and a float32 into float32 and lose the int's low digits.
    """
    tensors = scalars.tensors
    if len({t.dtype for t in tensors}) == 1:
        try:
            return [_Group(scalars.keys, _stack(tensors))]
        except Exception:  # several devices or shapes (a RuntimeError): sorted out below
            pass
    kinds: dict[tuple[Any, Any, int], tuple[list[str], list[Any]]] = {}
    for key, tensor in zip(scalars.keys, tensors):
        kind = (tensor.device, tensor.dtype, tensor.dim())
        group = kinds.get(kind)
        if group is None:
            group = kinds[kind] = ([], [])
        group[0].append(key)
        group[1].append(tensor)
    groups = []
    for keys, members in kinds.values():
        try:
            groups.append(_Group(keys, _stack(members)))
        except Exception as exc:  # values torch cannot stack never cost the rest of their call
            reason = f"{type(exc).__name__}: {exc}"
            for key in keys:
                warn_once(("deferred", key, reason), f"trackio_shim: key {key!r}: {reason}; it was dropped")
    return groups


class DeferredCopies:
    """The queue of log() calls whose device values are still being copied; see the module docstring."""

    def __init__(self, limit: int, emit: Emit) -> None:
        self.limit = limit
        self.pool = HostPool(limit)
        self._emit = emit
        self._calls: deque[_Call] = deque()
        # Held while emitting, so resolved calls reach the session in log() order; never taken by a thread
        # holding the session's lock (the order is always this lock, then the session's).
        self._lock = threading.Lock()
        self.in_flight = 0
        self.forced = 0  # calls resolved early by back-pressure
        self.resolved = 0
        self.submitted = 0  # calls handed in: the pump stays on its short cadence while this moves

    def submit(self, handle: int, step: int, ts: float, staged: list[Staged], scalars: Scalars | None = None) -> None:
        """Start the copies of one log() call; waits for the oldest calls only while over the bound.

        The bound counts a call's stacked scalars as one copy per device and dtype, each histogram or array as one.
        """
        import torch

        with self._lock:
            # Autograd off while staging: a logged loss usually requires grad, and a stack recorded on its graph
            # would cost a node per call and hold the graph until the copy is read. (torch.no_grad() does the same
            # in Python, at several times the cost of log()'s whole budget for a tensor.)
            grad = torch.is_grad_enabled()
            if grad:
                torch._C._set_grad_enabled(False)
            try:
                groups = _groups(scalars) if scalars is not None and scalars.keys else []
            finally:
                if grad:
                    torch._C._set_grad_enabled(True)
            count = len(staged) + len(groups)
            while self._calls and self.in_flight + count > self.limit:
                call = self._calls.popleft()
                call.wait()
                self.forced += 1
                self._resolve(call)
            markers = self._start(staged, groups)
            self._calls.append(_Call(handle, step, ts, staged, groups, markers))
            self.in_flight += count
            self.submitted += 1

    def _start(self, staged: list[Staged], groups: list[_Group]) -> list[Any]:
        import torch

        markers: list[Any] = []
        devices: dict[Any, None] = {}
        pooled: dict[Any, list[Staged | _Group]] = {}
        for group in groups:
            pooled.setdefault(group.source.device, []).append(group)
        for item in staged:
            source = item.source
            device = source.device
            if item.pooled:
                pooled.setdefault(device, []).append(item)
                continue
            cuda = device.type == "cuda"
            item.host = torch.empty(source.shape, dtype=source.dtype, pin_memory=cuda)
            self._copy(item.host, source.reshape(item.host.shape), device)
            if cuda:
                devices[device] = None
        for device, items in pooled.items():
            cuda = device.type == "cuda"
            flat, order = self._join(items, cuda)
            count = int(flat.numel())
            batch = _Batch(self.pool.take(count, cuda), count, cuda)
            buffer = batch.buffer  # a slice costs as much as the copy: taken only when the buffer is larger
            self._copy(buffer if buffer.numel() == count else buffer[:count], flat, device)
            start = 0
            for piece in order:
                end = start + int(piece.source.numel())
                piece.host, piece.span, start = batch, (start, end), end
            if cuda:
                devices[device] = None
        for device in devices:
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record(torch.cuda.current_stream(device))
            markers.append(event)
        if not markers:
            markers.append(READY)
        return markers

    @staticmethod
    def _join(items: list[Staged | _Group], on_device: bool) -> tuple[Any, list[Staged | _Group]]:
        """The flat sources of one device as one float64 tensor, and the items in the order it holds them.

        Joined per dtype first, then widened once per dtype: a kernel launch costs microseconds of CPU, so a
        call of ten float32 losses costs two launches (their stack, one widening), not twenty. (torch.cat of
        mixed dtypes would promote an int64 and a float32 to float32 and lose the int's low digits; each dtype
        is widened alone.) On the CPU one dtype is not widened at all: the copy into the float64 buffer converts
        as it copies.
        """
        import torch

        by_dtype: dict[Any, list[Staged | _Group]] = {}
        for item in items:
            by_dtype.setdefault(item.source.dtype, []).append(item)
        parts, order = [], []
        widen = on_device or len(by_dtype) > 1
        for dtype, group in by_dtype.items():
            sources = [item.source for item in group]
            joined = sources[0] if len(sources) == 1 else torch.cat(sources)  # one kernel, no sync
            parts.append(joined.to(torch.float64) if widen and dtype != torch.float64 else joined)
            order.extend(group)
        return (parts[0] if len(parts) == 1 else torch.cat(parts)), order

    @staticmethod
    def _copy(host: Any, source: Any, device: Any) -> None:
        """Copy ``source`` into ``host``: queued on a CUDA device's current stream, at once on the CPU."""
        if device.type == "cuda":
            import torch

            with torch.cuda.device(device):
                host.copy_(source, non_blocking=True)
        else:  # CPU (and accelerators without events): the copy is complete when it returns
            host.copy_(source)

    def poll(self) -> int:
        """Send every call at the head of the queue whose copies have completed; never blocks on a device."""
        if not self._calls:
            return 0
        done = 0
        with self._lock:
            while self._calls and self._calls[0].ready():
                self._resolve(self._calls.popleft())
                done += 1
        return done

    def drain(self) -> int:
        """Wait for every copy in flight and send them all (flush(), finish(), exit)."""
        done = 0
        with self._lock:
            while self._calls:
                call = self._calls.popleft()
                call.wait()
                self._resolve(call)
                done += 1
        return done

    def pending(self) -> int:
        return len(self._calls)

    def _resolve(self, call: _Call) -> None:
        scalars: dict[str, Any] = {}
        media: dict[str, Any] = {}
        for group in call.groups:
            try:
                values = self._values(group.host)[group.span[0] : group.span[1]]
            except Exception as exc:  # never seen; if the buffer cannot be read, the call's other values still go
                reason = f"{type(exc).__name__}: {exc}"
                for key in group.keys:
                    warn_once(("deferred", key, reason), f"trackio_shim: key {key!r}: {reason}; it was dropped")
                continue
            finally:
                group.host = group.source = None
            if group.integral:  # as .item() gives them: ints (bools as 0 and 1)
                values = [int(value) if value.is_integer() else value for value in values]
            scalars.update(zip(group.keys, values))
        for item in call.copies:
            try:
                if item.pooled:
                    item.host = self._values(item.host)[item.span[0] : item.span[1]]
                is_media, value = item.finish(item.host)
            except Exception as exc:  # one value that cannot be sent never costs the rest of its call
                reason = str(exc) if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"
                warn_once(("deferred", item.key, reason), f"trackio_shim: key {item.key!r}: {reason}; it was dropped")
                continue
            finally:
                item.host = item.source = None
            (media if is_media else scalars)[item.key] = value
        self.in_flight -= call.count
        self.resolved += 1
        self._emit(call.handle, call.step, call.ts, scalars, media)

    def _values(self, batch: _Batch) -> list[float]:
        """The batch's values as floats, read once; its buffer goes back to the pool on that first read."""
        if batch.values is None:
            try:
                batch.values = batch.buffer.tolist()  # the whole buffer: cheaper than a slice, the spans pick
            finally:
                self.pool.give(batch.buffer, batch.pinned)
                batch.buffer = None
        return batch.values
