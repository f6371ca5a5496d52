"""0-d CPU torch tensors in log(), with real torch (CPU build) and a real daemon.

Tensors of other shapes, histograms and the deferred-copy queue are covered by tests/shim/test_tensors.py.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch (CPU build) is installed by scripts/setup.sh")


def test_zero_dim_cpu_tensor_is_logged_as_its_item(shim, daemon):
    run = shim.init(project="torch-values")
    loss = torch.tensor(0.25, dtype=torch.float32)
    count = torch.tensor(7)
    flag = torch.tensor(True)
    run.log({"loss": loss, "count": count, "flag": flag})
    run.finish()
    (row,) = shim.Api().run(f"torch-values/{run.id}").scan_history()
    assert row["loss"] == loss.item()
    assert row["count"] == 7
    assert row["flag"] == 1


def test_a_torch_object_that_is_no_tensor_is_refused_by_key_and_the_rest_is_kept(shim, daemon):
    run = shim.init(project="torch-values")
    with pytest.warns(UserWarning, match=r"key 'layer'.*torch\.nn\.modules\.linear\.Linear"):
        run.log({"layer": torch.nn.Linear(2, 2), "loss": torch.tensor(1.5)})
    run.finish()
    (row,) = shim.Api().run(f"torch-values/{run.id}").scan_history()
    assert row["loss"] == 1.5
    assert "layer" not in row
