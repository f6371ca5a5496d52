"""Tensors in log(), the deferred-copy queue and watch(), on CPU with real torch and a real daemon.

A one-element CPU tensor is logged as its ``.item()`` (no device to wait for). Everything else on the CPU
takes the same path as CUDA tensors (host pool, pending queue, bound on copies in flight) with a marker that
is complete at once; the queue's own tests hand it staged scalars directly (:func:`_submit`), as log() does
for a CUDA scalar. Where a test needs a copy that is *not* complete yet, it stands a ``SlowMarker`` in for
``torch.cuda.Event`` (the one part that needs a GPU); everything else is real. The GPU itself is covered by
tests/shim/test_gpu_tensors.py.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import numpy as np
import pytest

from tests.support.daemons import wait_for

torch = pytest.importorskip("torch", reason="torch (CPU build) is installed by scripts/setup.sh")

from tests.support.torch_ops import TensorOps  # noqa: E402
from trackio_shim.media.tensors import stage_scalar  # noqa: E402
from trackio_shim.session import deferred as T  # noqa: E402
from trackio_shim.session.client import current_client  # noqa: E402


class SlowMarker:
    """Stands in for torch.cuda.Event: incomplete until released (by the test or by synchronize())."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.waited = 0

    def query(self) -> bool:
        return self.done.is_set()

    def synchronize(self) -> None:
        self.waited += 1
        self.done.set()


class SlowCopies(T.DeferredCopies):
    """The real queue, with each call's completion marker replaced by a SlowMarker."""

    def __init__(self, limit: int, emit: T.Emit) -> None:
        super().__init__(limit, emit)
        self.markers: list[SlowMarker] = []

    def _start(self, staged: list[T.Staged], groups: list[Any]) -> list[Any]:
        super()._start(staged, groups)
        marker = SlowMarker()
        self.markers.append(marker)
        return [marker]


def _submit(run: Any, step: int, **values: float) -> None:
    """One log() call's scalars through the deferred queue, staged as log() stages a CUDA scalar."""
    staged = [stage_scalar(key, torch.tensor(value)) for key, value in values.items()]
    current_client().deferred().submit(run._handle, step, time.time(), staged)


def _history(shim: Any, run: Any) -> list[dict[str, Any]]:
    return list(shim.Api().run(f"{run.project}/{run.id}").scan_history())


def _series_times(shim: Any, run: Any, key: str) -> list[float]:
    from trackiod.read.connection import open_reader
    from trackiod.read.runs import run_keys
    from trackiod.read.series import read_series

    api_run = shim.Api().run(f"{run.project}/{run.id}")
    conn = open_reader(shim.Api().settings.db_path)
    try:
        key_id = run_keys(conn, api_run._row["id"])[key][0]
        return read_series(conn, api_run._row["id"], key_id)[1].tolist()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------- scalars


def test_deferred_scalars_equal_item_at_their_own_step_and_time(shim, daemon):
    run = shim.init(project="tensors")
    values = [torch.tensor(1 / (i + 3), dtype=torch.float32) for i in range(20)]
    halves = [torch.tensor(i + 0.5, dtype=torch.float16) for i in range(20)]
    for i, (value, half) in enumerate(zip(values, halves)):
        run.log({"loss": value, "half": half, "count": torch.tensor(i), "plain": i})
    run.finish()
    rows = _history(shim, run)
    assert [r["_step"] for r in rows] == list(range(20))
    assert [r["loss"] for r in rows] == [v.item() for v in values]
    assert [r["half"] for r in rows] == [h.item() for h in halves]
    assert [r["count"] for r in rows] == list(range(20))
    # The deferred values carry the time of the log() call that took them, like the plain values of that call.
    assert _series_times(shim, run, "loss") == _series_times(shim, run, "plain")


def test_sync_copy_per_call_and_per_run_default(shim, daemon):
    run = shim.init(project="tensors", tensor_copy="sync")
    assert run.tensor_copy == "sync"
    run.log({"a": torch.tensor(2.5), "g": torch.arange(40.0)})
    run.log({"b": torch.tensor(3.5), "h": torch.arange(40.0)}, copy="deferred")
    run.finish()
    deferred = current_client().deferred()
    # Only the call that asked for it went through the queue, and only for its histogram: a one-element CPU
    # tensor is its .item() in either mode (there is no device to wait for).
    assert deferred.resolved == 1
    (first, second) = _history(shim, run)
    assert first["a"] == 2.5 and second["b"] == 3.5
    assert first["g"]["values"] == second["h"]["values"]


def test_pool_is_reused_and_bounded(shim, daemon, monkeypatch):
    monkeypatch.setenv("TRACKIOD_MAX_INFLIGHT_COPIES", "4")
    run = shim.init(project="tensors")
    for i in range(300):
        _submit(run, i, a=float(i), b=float(-i))
    run.finish()
    pool = current_client().deferred().pool
    assert pool.allocated <= 4
    assert pool.reused >= 295  # one buffer per call, whatever the number of tensors in it
    assert pool.live <= 4
    rows = _history(shim, run)
    assert [r["a"] for r in rows] == list(range(300))


def test_pending_copies_wait_for_their_marker_then_go_out_in_order(shim, daemon):
    run = shim.init(project="tensors")
    client = current_client()
    slow = SlowCopies(8, client._emit_resolved)
    client._deferred = slow
    for i in range(3):
        _submit(run, i, loss=float(i))
    assert slow.pending() == 3 and slow.poll() == 0  # polling never waits on a device
    slow.markers[1].done.set()
    assert slow.poll() == 0  # the oldest is not complete: nothing overtakes it
    slow.markers[0].done.set()
    assert slow.poll() == 2
    run.flush()  # forces the rest
    assert slow.pending() == 0 and slow.markers[2].waited == 1
    run.finish()
    assert [r["loss"] for r in _history(shim, run)] == [0, 1, 2]


def test_back_pressure_resolves_the_oldest_and_drops_nothing(shim, daemon):
    run = shim.init(project="tensors")
    client = current_client()
    slow = SlowCopies(3, client._emit_resolved)
    client._deferred = slow
    for i in range(10):
        _submit(run, i, loss=float(i))
        assert slow.in_flight <= 3
    assert slow.forced == 7
    assert [m.waited for m in slow.markers[:7]] == [1] * 7  # waited for, oldest first
    assert slow.pool.live <= 3
    run.finish()  # drains the last three
    assert [r["loss"] for r in _history(shim, run)] == list(range(10))


def test_the_pump_sends_completed_copies_without_another_log_call(shim, daemon):
    run = shim.init(project="tensors")
    client = current_client()
    slow = SlowCopies(8, client._emit_resolved)
    client._deferred = slow
    _submit(run, 0, loss=4.0)
    slow.markers[0].done.set()
    wait_for(lambda: slow.pending() == 0, timeout=5, what="the pump to send the completed copy")
    run.finish()
    assert _history(shim, run)[0]["loss"] == 4


def test_several_tensors_in_one_call_store_exactly_their_item_values(shim, daemon):
    run = shim.init(project="tensors")
    cpu = {
        "f32": torch.tensor(1 / 3, dtype=torch.float32),
        "f64": torch.tensor(1 / 7, dtype=torch.float64),
        "f16": torch.tensor(0.1, dtype=torch.float16),
        "bf16": torch.tensor(0.1, dtype=torch.bfloat16),
        "int": torch.tensor(123_456_789),
        "i8": torch.tensor(-5, dtype=torch.int8),
        "one": torch.ones(1, 1),  # one element, not 0-d
        "param": torch.nn.Parameter(torch.tensor(2.5)),
    }
    run.log(cpu)
    # The deferred queue's batch: scalars of several dtypes and a histogram in one buffer, read back once.
    client = current_client()
    pool = client.deferred().pool
    values = {"d32": torch.tensor(1 / 3, dtype=torch.float32), "dint": torch.tensor(7), "d16": torch.tensor(0.3).half()}
    staged = [stage_scalar(key, value) for key, value in values.items()]
    bins = T.Staged("hist", torch.arange(12.0, dtype=torch.float64), True, lambda host: (False, sum(host)))
    client.deferred().submit(run._handle, 1, time.time(), [*staged, bins])
    assert client.deferred().poll() == 1
    assert (pool.allocated, pool.in_use) == (1, 0)  # one buffer for the whole call, already back in the pool
    run.finish()
    first, second = _history(shim, run)
    assert {key: first[key] for key in cpu} == {key: value.item() for key, value in cpu.items()}
    assert {key: second[key] for key in values} == {key: value.item() for key, value in values.items()}
    assert second["hist"] == sum(range(12))


@pytest.fixture
def on_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """log() takes one-element CPU tensors for device tensors, as it takes a CUDA scalar: the hot path refuses them
    (its CPU check patched off) and the slow path stacks them for the deferred queue. The torch ops and the queue
    are real; only the CPU check is patched."""
    from trackio_shim.media import prepare
    from trackio_shim.session import encoding

    encoding.scalar_place(torch.tensor(0.0))  # torch's types looked up before the hot path's copy is patched
    monkeypatch.setattr(encoding, "cpu_scalar", lambda value: False)
    monkeypatch.setattr(encoding, "_cpu_tensor_kinds", ())
    # No place is "on the host", and the CPU is "a device": every plain one-element tensor is stacked.
    monkeypatch.setattr(prepare, "ON_HOST", None)
    monkeypatch.setattr(prepare, "ON_DEVICE", encoding.ON_HOST)


def test_device_scalars_of_a_call_are_stacked_and_store_exactly_their_item_values(shim, daemon, on_a_device):
    run = shim.init(project="tensors")
    weight = torch.tensor(3.0, requires_grad=True)
    values = {
        "f32": torch.tensor(1 / 3, dtype=torch.float32),
        "f32b": torch.tensor(2 / 3, dtype=torch.float32),
        "f64": torch.tensor(1 / 7, dtype=torch.float64),
        "f16": torch.tensor(0.1, dtype=torch.float16),
        "bf16": torch.tensor(0.1, dtype=torch.bfloat16),
        "int": torch.tensor(123_456_789),
        "big": torch.tensor(2**53 + 2),
        "i8": torch.tensor(-5, dtype=torch.int8),
        "flag": torch.tensor(True),
        "one": torch.ones(1),  # one element, not 0-d: stacked apart from the 0-d float32s
        "one11": torch.full((1, 1), 0.25),
        "param": torch.nn.Parameter(torch.tensor(2.5)),
        "loss": weight * 2,  # requires grad, as a logged loss usually does
    }
    run.log({**values, "plain": 1.5, "n": 3})  # numbers and device scalars only: split in one pass
    deferred = current_client().deferred()
    # One call, one pool buffer and one copy for all of them (CPU markers are complete at once).
    assert (deferred.resolved, deferred.pool.allocated, deferred.in_flight) == (1, 1, 0)
    assert torch.is_grad_enabled() and values["loss"].requires_grad  # autograd left as it was
    values["loss"].backward()  # the graph is the caller's, untouched
    assert weight.grad is not None and weight.grad.item() == 2.0
    # A nested dict, a key that is not ASCII and a string: the full path (clean_log, prepare), stacked the same.
    run.log({**values, "nested": {"acc": torch.tensor(0.75)}, "λ": torch.tensor(4.0), "note": "x"})
    assert (deferred.resolved, deferred.pool.allocated, deferred.in_flight) == (2, 1, 0)
    run.finish()
    first, second = _history(shim, run)
    expected = {key: value.item() for key, value in values.items()}
    assert {key: first[key] for key in expected} == expected == {key: second[key] for key in expected}
    assert type(first["int"]) is int and first["flag"] == 1 and (first["plain"], first["n"]) == (1.5, 3)
    assert (second["nested/acc"], second["λ"], second["note"]) == (0.75, 4.0, "x")


def test_scalars_torch_cannot_stack_are_named_and_the_rest_of_the_call_kept(shim, daemon, on_a_device, monkeypatch):
    stack = T._stack

    def refuse_halves(tensors: list[Any]) -> Any:
        if tensors[0].dtype == torch.float16:
            raise RuntimeError("no halves today")
        return stack(tensors)

    monkeypatch.setattr(T, "_stack", refuse_halves)
    run = shim.init(project="tensors")
    with pytest.warns(UserWarning, match=r"key 'h'.*no halves today"):
        run.log({"h": torch.tensor(0.5).half(), "loss": torch.tensor(0.25), "lr": 0.1})
    run.finish()
    (row,) = _history(shim, run)
    assert (row["loss"], row["lr"]) == (0.25, 0.1) and "h" not in row


def test_a_meta_scalar_beside_device_scalars_is_named_and_dropped(shim, daemon, on_a_device):
    run = shim.init(project="tensors")
    with pytest.warns(UserWarning, match=r"key 'm'.*meta device"):
        run.log({"m": torch.empty((), device="meta"), "loss": torch.tensor(0.5), "lr": 0.1})
    run.finish()
    (row,) = _history(shim, run)
    assert (row["loss"], row["lr"]) == (0.5, 0.1) and "m" not in row


def test_a_calls_torch_ops_do_not_grow_with_its_device_scalars(shim, daemon, on_a_device, monkeypatch):
    """Each further device scalar in a call costs no torch op of its own: one stack per dtype, one copy.

    The same calls staged one by one (the path a tensor subclass still takes) make two ops per tensor, which
    shows the count sees per-tensor work.
    """
    from trackio_shim.media import prepare

    run = shim.init(project="tensors")
    one = {"k0": torch.tensor(0.5)}
    ten = {f"k{i}": torch.tensor(i + 0.5) for i in range(10)}
    run.log(one)
    run.log(ten)  # the pool's buffers allocated outside the count

    def ops(data: dict[str, Any]) -> list[str]:
        with TensorOps() as counted:
            run.log(data)
        return counted.made

    stacked_one, stacked_ten = ops(one), ops(ten)
    assert stacked_ten.count("stack") == 1 and stacked_ten.count("copy_") == 1, stacked_ten
    # At most one op more: the view of a pool buffer larger than the call (capacities are powers of two).
    assert len(stacked_ten) <= len(stacked_one) + 1, (stacked_one, stacked_ten)
    monkeypatch.setattr(prepare, "scalar_place", lambda value: 0)  # as for a subclass: one by one
    assert len(ops(ten)) >= len(ops(one)) + 2 * 9
    run.finish()
    rows = _history(shim, run)
    assert [row["k9"] for row in rows if "k9" in row] == [9.5] * 3


def test_a_loop_logging_device_scalars_does_not_wake_the_pump_per_call(shim, daemon, on_a_device, monkeypatch):
    """A wake-up hands the GIL to the pump at the call's next torch op (about half of the deferred path's time per
    tensor in round 4); while calls with tensors keep coming the pump stays on the window's cadence instead. It
    may go idle only after a window without such a call, so every wake-up but the first needs a pause in the loop.
    """
    run = shim.init(project="tensors")
    client = current_client()
    wake, wakes = client._wake_pump, []

    def counted() -> None:
        wakes.append(None)
        wake()

    monkeypatch.setattr(client, "_wake_pump", counted)
    values = {f"k{i}": torch.tensor(i + 0.5) for i in range(4)}
    starts = []
    for _ in range(400):
        starts.append(time.perf_counter())
        run.log(values)
    pauses = sum(1 for a, b in itertools.pairwise(starts) if b - a >= 0.001)
    assert len(wakes) <= 2 + 2 * pauses, (len(wakes), pauses)
    run.finish()
    assert [row["k3"] for row in _history(shim, run)] == [3.5] * 400


def test_device_scalars_on_a_pending_marker_count_once_per_call_against_the_bound(shim, daemon):
    """The bound on copies in flight counts a call's stacked scalars as one copy per device and dtype."""
    from trackio_shim.session.deferred import Scalars

    run = shim.init(project="tensors")
    client = current_client()
    slow = SlowCopies(4, client._emit_resolved)
    client._deferred = slow
    for step in range(6):
        scalars = Scalars()
        for i in range(10):
            scalars.keys.append(f"k{i}")
            scalars.tensors.append(torch.tensor(step * 10 + i, dtype=torch.float32))
        slow.submit(run._handle, step, time.time(), [], scalars)
        assert slow.in_flight <= 4
    assert slow.forced == 2 and slow.pool.live <= 4
    run.finish()
    rows = _history(shim, run)
    assert [[row[f"k{i}"] for i in range(10)] for row in rows] == [[s * 10 + i for i in range(10)] for s in range(6)]


def test_unsupported_dtype_names_the_key_and_keeps_the_rest(shim, daemon):
    run = shim.init(project="tensors")
    with pytest.warns(UserWarning, match=r"key 'z'.*complex64"):
        run.log({"z": torch.tensor(1 + 2j), "loss": torch.tensor(0.5), "x": 1})
    run.finish()
    (row,) = _history(shim, run)
    assert row["loss"] == 0.5 and row["x"] == 1 and "z" not in row


# --------------------------------------------------------------------------------------------------- histograms


def test_tensor_histogram_is_computed_on_device_and_matches_numpy(shim, daemon):
    data = torch.randn(10_000, generator=torch.Generator().manual_seed(1))
    data[0], data[1] = float("nan"), float("inf")
    run = shim.init(project="tensors")
    run.log({"h": shim.Histogram(data, num_bins=32), "const": shim.Histogram(torch.full((5,), 2.0), num_bins=4)})
    run.finish()
    api_run = shim.Api().run(f"tensors/{run.id}")
    (stored,) = api_run.media("h")
    finite = data[torch.isfinite(data)].double().numpy()
    counts, edges = np.histogram(finite, bins=32)
    assert sum(stored["values"]) == finite.size
    assert np.allclose(stored["bins"], edges)
    assert np.abs(np.asarray(stored["values"]) - counts).max() <= 1  # float32 rounding at a bin edge at most
    (const,) = api_run.media("const")
    assert (const["values"], const["bins"]) == tuple(x.tolist() for x in np.histogram([2.0] * 5, bins=4))


def test_histogram_from_sequence_and_np_histogram(shim, daemon):
    run = shim.init(project="tensors")
    counts, edges = np.histogram(np.arange(100), bins=10)
    run.log({"seq": shim.Histogram([1, 2, 2, 3], num_bins=3), "given": shim.Histogram(np_histogram=(counts, edges))})
    with pytest.warns(UserWarning, match=r"key 'bad'.*edges must be counts \+ 1"):
        run.log({"bad": shim.Histogram(np_histogram=([1, 2], [0, 1])), "ok": 1})
    run.finish()
    api_run = shim.Api().run(f"tensors/{run.id}")
    assert api_run.media("seq")[0]["values"] == [1, 2, 1]
    loaded = api_run.media("given")[0].load()
    assert loaded.histogram == counts.tolist() and loaded.bins == edges.tolist()
    assert api_run.media("bad") == [] and _history(shim, run)[-1]["ok"] == 1


def test_bare_arrays_and_tensors_become_histograms_or_arrays_as_in_wandb(shim, daemon):
    run = shim.init(project="tensors")
    run.log({"big": torch.arange(100.0), "small": torch.ones(3), "np_big": np.zeros(50), "np_one": np.array([7])})
    run.finish()
    (row,) = _history(shim, run)
    assert row["big"].kind == "histogram" and sum(row["big"]["values"]) == 100
    assert row["np_big"].kind == "histogram"
    assert row["small"].kind == "array" and row["small"].load().tolist() == [1.0, 1.0, 1.0]
    assert row["np_one"] == 7


# --------------------------------------------------------------------------------------------------- watch


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(8, 16)
        self.out = torch.nn.Linear(16, 1)

    def forward(self, x: Any) -> Any:
        return self.out(torch.relu(self.hidden(x)))


def test_watch_logs_gradient_and_parameter_histograms_every_log_freq_steps(shim, daemon):
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    run = shim.init(project="tensors")
    shim.watch(model, log="all", log_freq=3)
    for _ in range(7):
        loss = model(torch.randn(4, 8)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log({"loss": loss.detach()})
    shim.unwatch(model)
    model(torch.randn(4, 8)).sum().backward()  # unwatched: logs nothing
    run.finish()
    api_run = shim.Api().run(f"tensors/{run.id}")
    for name, param in model.named_parameters():
        assert [m.step for m in api_run.media(f"gradients/{name}")] == [0, 3, 6]
        params = api_run.media(f"parameters/{name}")
        assert [m.step for m in params] == [0, 3, 6]
        assert sum(params[-1]["values"]) == param.numel()
    assert len(_history(shim, run)) == 7


def test_watch_logs_each_passes_histograms_in_one_call_and_one_buffer(shim, daemon):
    torch.manual_seed(0)
    model = MLP()
    run = shim.init(project="tensors")
    shim.watch(model, log="all", log_freq=1)
    model(torch.randn(4, 8)).pow(2).mean().backward()
    run.log({"loss": 1.0})
    run.flush()
    deferred = current_client().deferred()
    # One call for the four parameter histograms, one for the four gradient histograms (not one per gradient),
    # each joined into one copy and one pool buffer.
    assert (deferred.resolved, deferred.pool.allocated) == (2, 1)
    shim.unwatch(model)
    run.finish()
    api_run = shim.Api().run(f"tensors/{run.id}")
    for name, param in model.named_parameters():
        (grads,) = api_run.media(f"gradients/{name}")
        assert grads.step == 0 and sum(grads["values"]) == param.numel()


def test_watch_rejects_bad_arguments(shim, daemon):
    shim.init(project="tensors")
    with pytest.raises(shim.UsageError, match="log="):
        shim.watch(MLP(), log="weights")
    with pytest.raises(shim.UsageError, match=r"torch\.nn\.Module"):
        shim.watch(object())
