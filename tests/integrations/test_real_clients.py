"""Third-party code that logs to wandb or trackio, run UNCHANGED through the switch, read back through Api().

Each script is what a user of that framework writes, plus nothing: the switch is the environment variable
``TRACKIO_SHIM_AS=wandb,trackio`` (the one line docs/integrations.md tells users to add), honoured by the
wheel's .pth. The scripts run in an interpreter where wandb and trackio are NOT installed (tests/support/
switch_env.py), so what they import can only be trackio_shim; their child processes (Lightning's ddp_spawn
ranks) use the same interpreter. Models are tiny and built from configs, data is random, nothing is
downloaded. Clients: transformers' WandbCallback and TrackioCallback, Lightning's WandbLogger (pytorch_lightning
2.6), accelerate's WandBTracker, torch-rechub's WandbLogger. d9d is not here: every d9d release needs
torch>=2.14 while the project pins torch==2.13.0 (pip install --dry-run d9d==0.24.0 pulls torch 2.14.1).

Assertions marked MEDIA depend on lists of media being stored element by element (issue 14 part 4, built
beside this module); the rest hold either way.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess
from tests.support.switch_env import venv_without
from trackio_shim import Api


@pytest.fixture(scope="module")
def python_without_wandb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv_without(tmp_path_factory.mktemp("no-wandb"))


def run_client(python: Path, folder: Path, code: str, env: dict[str, str], timeout: float = 240) -> str:
    """Run ``code`` as a script file (spawned ranks re-import it) under the switch; returns its stdout."""
    script = folder / "client.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [str(python), str(script)],
        env={**env, "TRACKIO_SHIM_AS": "wandb,trackio", "TRACKIOD_SILENT": "1"},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"client script failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def runs_of(project: str) -> list[Any]:
    return sorted(Api().runs(project), key=lambda r: r.created_at)


def column(run: Any, key: str) -> dict[int, Any]:
    """``{step: value}`` of one key."""
    return {row["_step"]: row[key] for row in Api().run(run.path).scan_history(keys=[key])}


# --------------------------------------------------------------------------- transformers
_TRANSFORMERS = """
import os
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

torch.manual_seed(0)
config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, n_positions=16, bos_token_id=0, eos_token_id=0)
data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 32, (16, 8))]

def train_then_evaluate(report_to):
    args = TrainingArguments(
        output_dir=f"out-{report_to}", max_steps=4, per_device_train_batch_size=4, logging_steps=2,
        eval_strategy="steps", eval_steps=2, save_strategy="no", use_cpu=True, disable_tqdm=True,
        report_to=report_to, run_name=f"tiny-{report_to}", project="hf-trackio",
    )
    trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=data, eval_dataset=data[:4])
    trainer.train()
    return trainer.evaluate(eval_dataset=data[8:12])["eval_loss"]

os.environ["WANDB_PROJECT"] = "hf-wandb"
print("WANDB_EVAL", train_then_evaluate("wandb"))
print("TRACKIO_EVAL", train_then_evaluate("trackio"))
"""


def test_transformers_trainer_reports_to_wandb_and_to_trackio(
    daemon: DaemonProcess, env: dict[str, str], python_without_wandb: Path, tmp_path: Path
) -> None:
    out = run_client(python_without_wandb, tmp_path, _TRANSFORMERS, env)
    after = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if "_EVAL " in line}

    # report_to="wandb": WandbCallback, wandb.init(project=$WANDB_PROJECT, name=run_name), its own steps.
    (wb,) = runs_of("hf-wandb")
    assert wb.name == "tiny-wandb" and wb.state == "finished"
    assert wb.config["n_embd"] == 8 and wb.config["max_steps"] == 4 and wb.config["model/num_parameters"] > 0
    assert "train_runtime" in wb.summary  # the callback writes run.summary[...] for these
    evals = column(wb, "eval/loss")
    assert len(evals) == 3 and list(evals.values())[-1] == pytest.approx(after["WANDB_EVAL"])
    global_steps = column(wb, "train/global_step")
    assert [global_steps[s] for s in evals] == [2, 4, 4]  # evaluate() after training: at the last global step
    assert len(column(wb, "train/loss")) == 2

    # report_to="trackio": TrackioCallback, trackio.init(project=args.project, name=run_name, resume="allow"):
    # training finishes the run, evaluate() resumes it by name (trackio's rule) and logs after it.
    (tk,) = runs_of("hf-trackio")
    assert tk.name == "tiny-trackio" and tk.state == "finished"
    assert tk.config["n_embd"] == 8 and tk.config["model/num_parameters"] > 0
    evals = column(tk, "eval/loss")
    assert len(evals) == 3 and list(evals.values())[-1] == pytest.approx(after["TRACKIO_EVAL"])
    assert sorted(evals) == sorted(set(evals)) and max(evals) > max(column(tk, "train/loss"))


# --------------------------------------------------------------------------- Lightning
_LIGHTNING_MODULE = """
import numpy as np
import torch
import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

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
    def validation_step(self, batch, _):
        x, y = batch
        err = self.net(x) - y
        self.log_dict({"val_mse": (err ** 2).mean(), "val_mae": err.abs().mean()})
    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        images = [np.full((8, 8, 3), 40 * i, dtype=np.uint8) for i in range(3)]
        self.logger.log_image(key="samples", images=images, caption=["a", "b", "c"])
        self.logger.log_table(key="preds", columns=["epoch", "mse"], data=[[self.current_epoch, 0.5]])
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

def loaders():
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    return torch.utils.data.DataLoader(data, batch_size=8), torch.utils.data.DataLoader(data, batch_size=16)

def trainer(logger, **kwargs):
    return pl.Trainer(max_epochs=2, logger=logger, accelerator="cpu", log_every_n_steps=1, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)
"""

_LIGHTNING_TWO_FITS = (
    _LIGHTNING_MODULE
    + """
import wandb
for _ in range(2):  # two fits in a row, each with its logger, as Lightning's docs show
    train, val = loaders()
    trainer(WandbLogger(project="pl-wandb", name="tiny")).fit(Tiny(), train, val)
    wandb.finish()
"""
)


def test_lightning_wandb_logger_logs_and_two_fits_are_two_runs(
    daemon: DaemonProcess, env: dict[str, str], python_without_wandb: Path, tmp_path: Path
) -> None:
    run_client(python_without_wandb, tmp_path, _LIGHTNING_TWO_FITS, env)
    runs = runs_of("pl-wandb")
    # WandbLogger passes name="tiny", resume="allow" and no id for every fit: wandb makes a run per fit.
    assert [r.name for r in runs] == ["tiny", "tiny"] and len({r.id for r in runs}) == 2
    for run in runs:
        assert run.state == "finished" and run.config == {"lr": 0.1, "hidden": 4}
        assert len(column(run, "train_loss")) == 8  # 4 batches x 2 epochs, from self.log
        assert len(column(run, "val_mse")) == 2 and len(column(run, "val_mae")) == 2  # log_dict, each epoch
        global_steps = column(run, "trainer/global_step")
        assert max(global_steps.values()) == 7  # steps start again at 0 in each run, not at 8 or 16
        assert len(Api().run(run.path).media("preds")) == 2  # log_table, each epoch
        # MEDIA: log_image's list of three images, stored as three images at each of the two epochs.
        samples = Api().run(run.path).media("samples")
        assert len(samples) == 2, samples


_LIGHTNING_DDP_SPAWN = (
    _LIGHTNING_MODULE
    + """
if __name__ == "__main__":
    train, val = loaders()
    logger = WandbLogger(project="pl-ddp", name="spawned")
    trainer(logger, strategy="ddp_spawn", devices=2, num_nodes=1).fit(Tiny(), train, val)
    print("VERSION", logger.version)
"""
)


@pytest.mark.slow
def test_lightning_wandb_logger_under_ddp_spawn_on_two_cpu_processes(
    daemon: DaemonProcess, env: dict[str, str], python_without_wandb: Path, tmp_path: Path
) -> None:
    """ddp_spawn pickles the logger (wandb.require("service"), run._attach_id) into two spawned ranks; rank 0
    attaches to the run the main process started and logs; the other rank logs nothing."""
    out = run_client(python_without_wandb, tmp_path, _LIGHTNING_DDP_SPAWN, {**env, "OMP_NUM_THREADS": "1"})
    (run,) = runs_of("pl-ddp")
    assert f"VERSION {run.id}" in out
    assert run.name == "spawned" and run.state == "finished" and run.config == {"lr": 0.1, "hidden": 4}
    assert len(column(run, "train_loss")) == 4  # 32 samples split over 2 ranks: 2 batches x 2 epochs, rank 0
    assert len(column(run, "val_mse")) == 2


# --------------------------------------------------------------------------- accelerate
_ACCELERATE = """
import numpy as np
import torch
from accelerate import Accelerator

accelerator = Accelerator(log_with="wandb", cpu=True)
accelerator.init_trackers("acc-wandb", config={"lr": 0.1, "batch": 8}, init_kwargs={"wandb": {"name": "tiny-acc"}})
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = accelerator.prepare(model, optimizer)
torch.manual_seed(0)
x, y = torch.randn(32, 4), torch.randn(32, 1)
for step in range(5):
    loss = torch.nn.functional.mse_loss(model(x), y)
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    accelerator.log({"loss": loss.item()}, step=step)
tracker = accelerator.get_tracker("wandb")
tracker.log_images({"samples": [np.zeros((8, 8, 3), dtype=np.uint8), np.full((8, 8, 3), 255, np.uint8)]}, step=5)
tracker.log_table("preds", columns=["x", "y"], data=[[1, 2], [3, 4]], step=5)
accelerator.end_training()
"""


def test_accelerate_logs_with_wandb(
    daemon: DaemonProcess, env: dict[str, str], python_without_wandb: Path, tmp_path: Path
) -> None:
    run_client(python_without_wandb, tmp_path, _ACCELERATE, env)
    (run,) = runs_of("acc-wandb")
    assert run.name == "tiny-acc" and run.state == "finished" and run.config == {"lr": 0.1, "batch": 8}
    losses = column(run, "loss")
    assert sorted(losses) == [0, 1, 2, 3, 4] and losses[4] < losses[0]
    assert [m.step for m in Api().run(run.path).media("preds")] == [5]
    # MEDIA: log_images' list of two images, both stored at step 5.
    assert [m.step for m in Api().run(run.path).media("samples")] == [5]


# --------------------------------------------------------------------------- torch-rechub
_RECHUB = """
import torch
from torch_rechub.basic.tracking import TensorBoardXLogger, WandbLogger
from torch_rechub.trainers import CTRTrainer

class TinyCTR(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
    def forward(self, x):
        return torch.sigmoid(self.linear(x["dense"])).squeeze(1)

class Rows(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x, self.y = torch.randn(n, 4), torch.randint(0, 2, (n,))
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return {"dense": self.x[i]}, self.y[i]

torch.manual_seed(0)
train = torch.utils.data.DataLoader(Rows(64), batch_size=16)
val = torch.utils.data.DataLoader(Rows(32), batch_size=16)
alone = WandbLogger(project="rechub", name="alone", config={"model": "tiny"})
CTRTrainer(TinyCTR(), n_epoch=2, model_path=".", model_logger=alone).fit(train, val)
both = [WandbLogger(project="rechub", name="with-tensorboard"), TensorBoardXLogger(log_dir="tb")]
CTRTrainer(TinyCTR(), n_epoch=3, model_path=".", model_logger=both).fit(train, val)
"""


def test_torch_rechub_wandb_logger_alone_and_in_a_list(
    daemon: DaemonProcess, env: dict[str, str], python_without_wandb: Path, tmp_path: Path
) -> None:
    run_client(python_without_wandb, tmp_path, _RECHUB, env)
    alone, both = runs_of("rechub")
    assert (alone.name, both.name) == ("alone", "with-tensorboard")
    assert alone.state == both.state == "finished"
    assert alone.config["model"] == "tiny" and alone.config["n_epoch"] == 2 and both.config["n_epoch"] == 3
    assert sorted(column(alone, "train/loss")) == [0, 1] and sorted(column(alone, "val/auc")) == [0, 1]
    assert sorted(column(both, "train/loss")) == [0, 1, 2]
    assert any((tmp_path / "tb").iterdir())  # the other logger of the list got its calls too
