"""CUDA tensors in log(): no device sync inside log(), exact values, a bounded reused pinned pool, streams.

Needs an NVIDIA GPU with CUDA; everywhere else every test here is skipped with the reason. The same queue,
pool and bound are exercised on CPU by tests/shim/test_tensors.py.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch is installed by scripts/setup.sh")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine",
    ),
]

from trackio_shim.session.client import current_client  # noqa: E402


def _rows(shim: Any, run: Any) -> list[dict[str, Any]]:
    return list(shim.Api().run(f"{run.project}/{run.id}").scan_history())


@pytest.fixture
def sync_errors() -> Any:
    """Any device synchronisation inside the block raises (torch's sync debug mode)."""

    class Guard:
        def __enter__(self) -> None:
            torch.cuda.set_sync_debug_mode("error")

        def __exit__(self, *exc: object) -> None:
            torch.cuda.set_sync_debug_mode("default")

    return Guard()


def test_log_never_synchronises_with_the_gpu(shim, daemon, sync_errors):
    run = shim.init(project="gpu")
    x = torch.randn(1024, 1024, device="cuda")
    run.log({"warmup": x.sum(), "h": shim.Histogram(x)})  # first use allocates the pool and the events
    run.flush()
    with sync_errors:
        for step in range(50):
            loss = (x * step).mean()
            run.log(
                {"loss": loss, "grad": shim.Histogram(x * step), "img": shim.Image(x[:3, :8, None].expand(3, 8, 8))}
            )
    run.finish()
    assert len(_rows(shim, run)) == 51


def test_log_returns_while_a_long_kernel_is_still_running(shim, daemon):
    run = shim.init(project="gpu")
    stream = torch.cuda.current_stream()
    value = torch.ones((), device="cuda")
    run.log({"warm": value})
    run.flush()
    torch.cuda._sleep(2_000_000_000)  # about a second of GPU time on the current stream
    run.log({"loss": value * 3})
    assert not stream.query(), "log() waited for the GPU"
    assert current_client().deferred().pending() == 1
    run.flush()
    run.finish()
    assert _rows(shim, run)[-1]["loss"] == 3


def test_stored_values_equal_item(shim, daemon):
    run = shim.init(project="gpu")
    generator = torch.Generator(device="cuda").manual_seed(0)
    losses = [torch.rand((), device="cuda", generator=generator) for _ in range(100)]
    halves = [loss.half() for loss in losses]
    for loss, half in zip(losses, halves):
        run.log({"loss": loss, "half": half, "steps": torch.tensor(7, device="cuda")})
    run.finish()
    rows = _rows(shim, run)
    assert [r["loss"] for r in rows] == [loss.item() for loss in losses]
    assert [r["half"] for r in rows] == [half.item() for half in halves]
    assert {r["steps"] for r in rows} == {7}


def test_pinned_pool_is_reused_and_bounded(shim, daemon, monkeypatch):
    monkeypatch.setenv("TRACKIOD_MAX_INFLIGHT_COPIES", "8")
    run = shim.init(project="gpu")
    value = torch.zeros((), device="cuda")
    for step in range(500):
        run.log({"a": value + step, "b": value - step})
    deferred = current_client().deferred()
    assert deferred.in_flight <= 8
    run.finish()
    pool = deferred.pool
    assert pool.allocated <= 8 and pool.live <= 8
    assert pool.reused >= 500 - 8  # one buffer per call and device: a and b share it
    assert all(buffer.is_pinned() for buffers in pool._free.values() for buffer in buffers)
    assert [r["a"] for r in _rows(shim, run)] == list(range(500))


def test_non_default_streams_and_every_device(shim, daemon):
    run = shim.init(project="gpu")
    expected = []
    for index in range(torch.cuda.device_count()):
        device = torch.device("cuda", index)
        stream = torch.cuda.Stream(device=device)
        with torch.cuda.device(device), torch.cuda.stream(stream):
            x = torch.full((256, 256), float(index + 1), device=device)
            torch.cuda._sleep(100_000_000)
            y = (x * 2).sum()
            run.log({f"dev{index}": y, f"hist{index}": shim.Histogram(x, num_bins=4)})
        expected.append((index, y))
    run.finish()
    rows = _rows(shim, run)
    for index, y in expected:
        stored = [r[f"dev{index}"] for r in rows if f"dev{index}" in r]
        assert stored == [y.item()]
        (hist,) = shim.Api().run(f"gpu/{run.id}").media(f"hist{index}")
        assert sum(hist["values"]) == 256 * 256


def test_a_calls_scalars_take_one_stack_per_dtype_one_copy_and_one_event(shim, daemon, sync_errors):
    run = shim.init(project="gpu")
    weight = torch.tensor(3.0, device="cuda", requires_grad=True)
    values = {f"f{i}": torch.tensor(i / 3, device="cuda") for i in range(8)}
    values.update(
        count=torch.tensor(2**40 + 1, device="cuda"),
        half=torch.tensor(0.1, device="cuda", dtype=torch.float16),
        bf16=torch.tensor(0.1, device="cuda", dtype=torch.bfloat16),
        flag=torch.tensor(True, device="cuda"),
        one=torch.ones(1, device="cuda"),
        loss=weight * 2,
    )
    run.log(values)  # the pool's pinned buffer and the event, made before the check
    run.flush()
    deferred = current_client().deferred()
    torch.cuda._sleep(1_000_000_000)  # the copy cannot complete while log() runs
    with sync_errors:
        run.log(values)
    (call,) = deferred._calls
    assert len(call.markers) == 1 and not call.copies  # one event; no value staged on its own
    assert {group.host for group in call.groups} == {call.groups[0].host}  # one pool buffer, one copy
    assert len(call.groups) == 6  # float32 0-d, float32 (1,), int64, float16, bfloat16, bool
    assert torch.is_grad_enabled() and values["loss"].requires_grad
    run.finish()
    expected = {key: value.item() for key, value in values.items()}
    assert [{key: row[key] for key in values} for row in _rows(shim, run)] == [expected, expected]


def test_watch_on_the_gpu_never_synchronises_and_copies_once_per_pass(shim, daemon, sync_errors):
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)).cuda()
    run = shim.init(project="gpu")
    shim.watch(model, log="all", log_freq=1)
    model(torch.randn(8, 64, device="cuda")).pow(2).mean().backward()  # the pool's buffers, the events
    run.flush()
    deferred = current_client().deferred()
    torch.cuda._sleep(1_000_000_000)
    with sync_errors:
        model(torch.randn(8, 64, device="cuda")).pow(2).mean().backward()
    # One call for the parameters, one for the gradients; each one event and one buffer for all four tensors.
    assert deferred.pending() == 2
    for call in deferred._calls:
        assert len(call.markers) == 1 and len({item.host for item in call.copies}) == 1
    shim.unwatch(model)
    run.finish()
    api_run = shim.Api().run(f"gpu/{run.id}")
    for name, param in model.named_parameters():
        assert [sum(m["values"]) for m in api_run.media(f"gradients/{name}")] == [param.numel()] * 2


def test_batched_histograms_on_the_gpu_equal_the_one_tensor_path_and_never_synchronise(sync_errors):
    """watch()'s batched histograms (trackio_shim.media.tensors.HistogramBatches) on CUDA: the same counts and
    edges as each tensor's own histogram, with no sync once a layout's segment sizes were copied (first pass)."""
    from trackio_shim.media.tensors import HistogramBatches, histogram_on_device

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)).cuda()
    tensors = [
        *model.parameters(),
        torch.tensor([1.0, float("nan"), float("inf"), 2.0], device="cuda"),
        torch.full((5,), 3.0, device="cuda"),
        torch.arange(10, device="cuda"),
        torch.randn(7, dtype=torch.float64, device="cuda"),
        torch.randn(6, device="cuda").bfloat16(),
    ]
    batches = HistogramBatches(16)
    batches.compute(tensors)
    torch.cuda.synchronize()
    with sync_errors:
        rows = batches.compute(tensors)
    for tensor, row in zip(tensors, rows):
        assert torch.equal(row, histogram_on_device(tensor, 16)), tensor
