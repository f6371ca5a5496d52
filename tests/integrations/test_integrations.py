"""Framework integrations, run for real on CPU: accelerate, transformers and Lightning train tiny models built
from a config (nothing is downloaded), against a real daemon; the runs are read back from the store.

Each framework runs in a fresh interpreter (as a training script would), which also keeps their slow imports
out of the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess
from tests.support.scripts import run_script
from trackio_shim import Api
from trackio_shim.errors import UsageError
from trackio_shim.integrations.adapter import LoggerGroup, TrackiodLogger, as_logger


def _history(path: str, keys: list[str] | None = None) -> list[dict[str, Any]]:
    return list(Api().run(path).scan_history(keys=keys))


def _runs(project: str) -> list[Any]:
    return list(Api().runs(project))


# --------------------------------------------------------------------------- the adapter
class _Recorder:
    """A second logger of the same protocol (the trainer's own), recording calls; optionally broken."""

    def __init__(self, broken: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.broken = broken

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.calls.append(("metrics", (dict(metrics), step)))
        if self.broken:
            raise RuntimeError("this logger is broken")

    def log_hyperparams(self, params: Any) -> None:
        self.calls.append(("hparams", params))

    def finish(self) -> None:
        self.calls.append(("finish", None))


def test_adapter_logs_and_a_group_fans_out(daemon: DaemonProcess, shim: Any) -> None:
    import argparse

    logger = TrackiodLogger(project="adapter", name="first", id="ad1")
    recorder = _Recorder()
    group = as_logger([logger, recorder])
    assert isinstance(group, LoggerGroup) and as_logger([logger]) is logger
    group.log_hyperparams(argparse.Namespace(lr=0.1, layers=2))
    for step in range(5):
        group.log_metrics({"loss": 1.0 / (step + 1)}, step=step * 10)
    group.log_hyperparams({"lr": 0.05})  # a later value wins, as a trainer's own config would
    group.finish()
    assert [c[0] for c in recorder.calls] == ["hparams"] + ["metrics"] * 5 + ["hparams", "finish"]
    (run,) = _runs("adapter")
    assert (run.id, run.name, run.state) == ("ad1", "first", "finished")
    assert run.config == {"lr": 0.05, "layers": 2}
    assert [(r["_step"], r["loss"]) for r in _history("adapter/ad1")] == [(s * 10, 1.0 / (s + 1)) for s in range(5)]


def test_a_broken_logger_in_a_group_neither_hides_its_error_nor_starves_the_others() -> None:
    broken, healthy = _Recorder(broken=True), _Recorder()
    group = LoggerGroup([broken, healthy])
    with pytest.raises(RuntimeError, match="this logger is broken"):
        group.log_metrics({"x": 1}, step=3)
    assert healthy.calls == [("metrics", ({"x": 1}, 3))]


def test_stateful_restart_reattaches_to_the_same_run_and_step(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "ckpt.json"
    first = f"""
    import json, os
    from trackio_shim.integrations.adapter import TrackiodLogger
    logger = TrackiodLogger(project="restart", config={{"lr": 0.1}})
    for step in range(10):
        logger.log_metrics({{"loss": 10.0 - step}})
        if step == 5:  # the checkpoint: the model state after step 5, and the logger's state
            json.dump(logger.state_dict(), open({str(checkpoint)!r}, "w"))
    assert logger.run.summary["loss"] == 1.0  # reading the summary waits until the daemon has everything
    os._exit(1)  # then the job dies, at step 9, without finish()
    """
    run_script(first, env, check=False)
    saved = json.loads(checkpoint.read_text())
    assert saved["project"] == "restart" and saved["step"] == 6
    second = f"""
    import json
    from trackio_shim.integrations.adapter import TrackiodLogger
    logger = TrackiodLogger(project="restart", config={{"lr": 0.1}})
    logger.load_state_dict(json.load(open({str(checkpoint)!r})))
    for step in range(6, 12):  # training resumes after the checkpoint; steps 6..9 are trained again
        logger.log_metrics({{"loss": 100.0 + step}})
    logger.finish()
    """
    run_script(second, env)
    (run,) = _runs("restart")
    assert run.id == saved["id"] and run.state == "finished"
    losses = {r["_step"]: r["loss"] for r in _history(f"restart/{run.id}")}
    assert losses == {**{s: 10.0 - s for s in range(6)}, **{s: 100.0 + s for s in range(6, 12)}}


def test_load_state_dict_names_what_is_wrong() -> None:
    logger = TrackiodLogger(project="p")
    with pytest.raises(UsageError, match="the state has no 'id'"):
        logger.load_state_dict({"project": "p"})
    with pytest.raises(UsageError, match="'step' must be a non-negative int"):
        logger.load_state_dict({"project": "p", "id": "x", "step": -1})
    logger.load_state_dict({})  # saved before any run started: nothing to re-attach to


def test_only_the_main_process_logs(daemon: DaemonProcess, env: dict[str, str]) -> None:
    script = """
    from trackio_shim.integrations.adapter import TrackiodLogger
    logger = TrackiodLogger(project="ranks")
    logger.log_hyperparams({"lr": 1})
    logger.log_metrics({"loss": 1.0}, step=0)
    assert logger.run is None and logger.state_dict() == {}
    logger.finish()
    """
    run_script(script, {**env, "RANK": "1", "WORLD_SIZE": "2"})
    run_script(script.replace("is None and logger.state_dict() == {}", "is not None"), {**env, "RANK": "0"})
    assert len(_runs("ranks")) == 1


# --------------------------------------------------------------------------- accelerate
_ACCELERATE = """
import os, torch
from accelerate import Accelerator
from trackio_shim.integrations.accelerate import TrackiodTracker

resume = os.environ.get("RESUME") == "1"
tracker = TrackiodTracker(project="accel", run_name="tiny-linear")
accelerator = Accelerator(cpu=True, log_with=[tracker])
accelerator.init_trackers("accel", config={"lr": 0.1, "batch": 8})
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = accelerator.prepare(model, optimizer)
accelerator.register_for_checkpointing(tracker)
start = 0
if resume:
    accelerator.load_state(CKPT)
    start = 4
x, y = torch.randn(32, 4), torch.randn(32, 1)
for step in range(start, start + 4):
    loss = torch.nn.functional.mse_loss(model(x), y)
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    accelerator.log({"loss": loss.item()}, step=step)
if not resume:
    accelerator.save_state(CKPT)
accelerator.end_training()
"""


def test_accelerate_tracker_with_checkpoint_restore(daemon: DaemonProcess, env: dict[str, str], tmp_path: Path) -> None:
    script = _ACCELERATE.replace("CKPT", repr(str(tmp_path / "ckpt")))
    run_script(script, env)
    run_script(script, {**env, "RESUME": "1"})  # a new job restored from the checkpoint
    (run,) = _runs("accel")  # it re-attached to the same run instead of starting a new one
    assert run.name == "tiny-linear" and run.state == "finished"
    assert run.config == {"lr": 0.1, "batch": 8}
    assert [r["_step"] for r in _history(f"accel/{run.id}")] == list(range(8))


# --------------------------------------------------------------------------- transformers
_TRANSFORMERS = """
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from trackio_shim.integrations.transformers import TrackiodCallback

torch.manual_seed(0)
config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, n_positions=16, bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config)
data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 32, (24, 8))]

def trainer(max_steps):
    args = TrainingArguments(
        output_dir=OUT, max_steps=max_steps, per_device_train_batch_size=4, logging_steps=2, save_steps=3,
        eval_strategy="steps", eval_steps=3, report_to="none", use_cpu=True, run_name="tiny-gpt2",
        disable_tqdm=True,
    )
    return Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:4],
                   callbacks=[TrackiodCallback(project="hf")])

trainer(6).train()
trainer(9).train(resume_from_checkpoint=True)
"""


def test_transformers_callback_trains_resumes_and_logs(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    run_script(_TRANSFORMERS.replace("OUT", repr(str(tmp_path / "out"))), env, timeout=300)
    (run,) = _runs("hf")  # the resumed training continued the same run
    assert run.name == "tiny-gpt2" and run.state == "finished"
    assert run.config["n_embd"] == 8 and run.config["max_steps"] == 9 and run.config["logging_steps"] == 2
    history = _history(f"hf/{run.id}")
    train_steps = [r["_step"] for r in history if r.get("train/loss") is not None]
    eval_steps = [r["_step"] for r in history if r.get("eval/loss") is not None]
    assert train_steps == [2, 4, 6, 8]
    assert eval_steps == [3, 6, 9]
    assert any(r.get("train/train_runtime") is not None for r in history)


_EVALUATE_AFTER_TRAIN = """
import json
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from trackio_shim.integrations.transformers import TrackiodCallback

torch.manual_seed(0)
config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, n_positions=16, bos_token_id=0, eos_token_id=0)
data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 32, (16, 8))]
args = TrainingArguments(
    output_dir=OUT, max_steps=4, per_device_train_batch_size=4, logging_steps=2, save_strategy="no",
    eval_strategy="steps", eval_steps=2, report_to="none", use_cpu=True, run_name="eval-after", disable_tqdm=True,
)
trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=data, eval_dataset=data[:4],
                  callbacks=[TrackiodCallback(project="hf-eval")])
trainer.train()
in_training = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
after = trainer.evaluate(eval_dataset=data[8:12])["eval_loss"]  # another set: another loss
print("RESULT", json.dumps({"in_training": in_training, "after": after}))
"""


def test_transformers_evaluate_after_train_keeps_the_training_values(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    """Defect (issue 14): evaluate() after train() re-opened the finished run and overwrote the eval values of
    the last training step. Now the run stays open and the evaluation lands at the next step."""
    done = run_script(_EVALUATE_AFTER_TRAIN.replace("OUT", repr(str(tmp_path / "out"))), env, timeout=300)
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert "resumed" not in done.stderr  # the run was never re-opened
    (run,) = _runs("hf-eval")
    assert run.state == "finished"
    evals = {r["_step"]: r["eval/loss"] for r in _history(f"hf-eval/{run.id}", keys=["eval/loss"])}
    assert sorted(evals) == [2, 4, 5]
    assert [evals[2], evals[4]] == pytest.approx(result["in_training"])
    assert evals[5] == pytest.approx(result["after"])
    assert [
        (r["_step"], r["train/global_step"]) for r in _history(f"hf-eval/{run.id}", keys=["train/global_step"])
    ] == [(5, 4)]


# --------------------------------------------------------------------------- Lightning
_LIGHTNING = """
import torch
import pytorch_lightning as pl
from trackio_shim.integrations.lightning import TrackiodLogger

class Tiny(pl.LightningModule):
    def __init__(self, lr=0.1, hidden=4):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
loader = torch.utils.data.DataLoader(data, batch_size=8)
logger = TrackiodLogger(project="pl", name="tiny-pl")
trainer = pl.Trainer(max_epochs=2, logger=logger, accelerator="cpu", log_every_n_steps=1,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Tiny(), loader)
print("VERSION", logger.version, logger.name)
from trackio_shim import Api
print("STATE", Api().run(f"pl/{logger.version}").state)
"""


def test_lightning_logger_fits_a_tiny_model(daemon: DaemonProcess, env: dict[str, str]) -> None:
    out = run_script(_LIGHTNING, env, timeout=300).stdout
    (run,) = _runs("pl")
    assert f"VERSION {run.id} pl" in out
    # Defect (issue 14): reading version after fit() re-opened the finished run.
    assert "STATE finished" in out
    assert run.name == "tiny-pl" and run.state == "finished"
    assert run.config == {"lr": 0.1, "hidden": 4}
    history = _history(f"pl/{run.id}", keys=["train_loss"])
    assert [r["_step"] for r in history] == list(range(8))  # 4 batches x 2 epochs


# --------------------------------------------------------------------------- warnings at the user's line
_WARN_THROUGH_FRAMEWORK = """
import warnings
warnings.simplefilter("always")
from accelerate import Accelerator
from trackio_shim.integrations.accelerate import TrackiodTracker

accelerator = Accelerator(log_with=[TrackiodTracker(project="warn", run_name="w")], cpu=True)
accelerator.init_trackers("warn")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    accelerator.log({"ok": 1.0, "bad": object()}, step=0)  # THE LINE
accelerator.end_training()
(w,) = [w for w in caught if "'bad'" in str(w.message)]
print("AT", w.filename, w.lineno)
"""


def test_a_warning_through_a_framework_points_at_the_users_line(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    """Defect (issue 14): a warning raised while a framework called the shim pointed inside the framework
    (accelerate/accelerator.py), or at the shim's own lines; it names the line of the user's script now."""
    script = tmp_path / "train.py"
    script.write_text(_WARN_THROUGH_FRAMEWORK)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(i for i, text in enumerate(_WARN_THROUGH_FRAMEWORK.splitlines(), 1) if "THE LINE" in text)
    assert f"AT {script} {line}" in done.stdout
