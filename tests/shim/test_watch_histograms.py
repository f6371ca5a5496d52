"""watch()'s histograms computed a pass at a time (trackio_shim.media.tensors.HistogramBatches), on CPU with real
torch and a real daemon: the values stored equal the one-tensor path's, and a pass's torch calls do not grow with
the model's parameters. On a GPU the same pass is checked for syncs by tests/shim/test_gpu_tensors.py."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch (CPU build) is installed by scripts/setup.sh")

from tests.support.torch_ops import TensorOps  # noqa: E402
from trackio_shim.media.tensors import HistogramBatches, histogram_on_device, histogram_payload  # noqa: E402


def _mlp(layers: int) -> Any:
    torch.manual_seed(0)
    parts: list[Any] = []
    for _ in range(layers - 1):
        parts += [torch.nn.Linear(8, 8), torch.nn.ReLU()]
    return torch.nn.Sequential(*parts, torch.nn.Linear(8, 1))


def test_batched_histograms_equal_the_one_tensor_path_for_every_dtype_and_edge_case():
    model = _mlp(2)
    tensors = [
        *model.parameters(),
        torch.tensor([1.0, float("nan"), float("inf"), 2.0]),  # non-finite values left out
        torch.full((5,), 3.0),  # every value equal
        torch.tensor([float("nan")]),  # no finite value
        torch.arange(10),  # int64: binned as float32
        torch.randn(7, dtype=torch.float64),  # a batch of its own (float64)
        torch.randn(6).half(),
        torch.randn(6).bfloat16(),
        torch.tensor([True, False, True]),
        torch.randn(3, 4).t(),  # not contiguous
        torch.randn(3, dtype=torch.complex64),  # left to the one-tensor path
        torch.empty(0),  # idem
    ]
    rows = HistogramBatches(16).compute(tensors)
    assert rows[-1] is None and rows[-2] is None
    for tensor, row in zip(tensors[:-2], rows[:-2]):
        reference = histogram_on_device(tensor, 16)
        assert torch.equal(row, reference), (tensor, row, reference)
        assert histogram_payload(row.tolist(), 16) == histogram_payload(reference.tolist(), 16)


def test_batches_are_split_at_the_value_limit_and_still_equal(monkeypatch):
    from trackio_shim.media import tensors as T

    monkeypatch.setattr(T, "BATCH_VALUES", 100)
    model = _mlp(3)  # 8x8 weights (64 values) and biases: several chunks, one weight alone
    params = list(model.parameters())
    for row, param in zip(HistogramBatches(8).compute(params), params):
        assert torch.equal(row, histogram_on_device(param, 8))


def test_watch_stores_the_one_tensor_paths_histograms_of_parameters_and_gradients(shim, daemon):
    model = _mlp(3)
    run = shim.init(project="watch")
    shim.watch(
        model,
        log="all",
        log_freq=1,
    )
    params = {name: histogram_on_device(p, 64).tolist() for name, p in model.named_parameters()}
    model(torch.randn(4, 8)).pow(2).mean().backward()
    grads = {name: histogram_on_device(p.grad, 64).tolist() for name, p in model.named_parameters()}
    shim.unwatch(model)
    run.finish()
    api_run = shim.Api().run(f"watch/{run.id}")
    for name in params:
        (stored_param,) = api_run.media(f"parameters/{name}")
        (stored_grad,) = api_run.media(f"gradients/{name}")
        for stored, reference in ((stored_param, params[name]), (stored_grad, grads[name])):
            expected = histogram_payload(reference, 64)
            assert (stored["values"], stored["bins"]) == (expected["values"], expected["bins"])


def _pass_ops(shim: Any, layers: int) -> int:
    """The torch calls a watched training pass makes beyond the same pass unwatched."""
    model = _mlp(layers)
    inputs = torch.randn(4, 8)

    def count() -> int:
        with TensorOps() as ops:
            model(inputs).pow(2).mean().backward()
        return len(ops.made)

    run = shim.init(project="watch")
    plain = count()
    shim.watch(model, log="all", log_freq=1)
    count()  # the first pass caches each batch's segments
    watched = count()
    shim.unwatch(model)
    run.finish()
    return watched - plain


def test_a_watched_pass_makes_as_many_torch_calls_for_eight_layers_as_for_two(shim, daemon):
    """Before the batching each parameter's histogram took about 25 torch calls (and each gradient's as many)."""
    two, eight = _pass_ops(shim, 2), _pass_ops(shim, 8)
    assert eight == two, (two, eight)
