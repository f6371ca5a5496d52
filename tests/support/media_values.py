"""A training script logging every kind of value issue 14 added (a gallery, pyplot, wandb.plot charts, a video, audio,
a 3-D object, a plotly figure), and a daemon-served store of it, for the dashboard's API and browser tests."""

from __future__ import annotations

from pathlib import Path

from tests.support.scripts import run_script

MEDIA_VALUES_RUN = """
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import trackio_shim as wandb

run = wandb.init(project="values", name="values-run")
rng = np.random.default_rng(0)
for step in range(2):
    tiles = [wandb.Image(np.full((8, 8, 3), 60 * (i + 1), np.uint8), caption=f"tile {i}") for i in range(3)]
    run.log({"gallery": tiles}, step=step)
plt.figure(figsize=(2, 1), dpi=50)
plt.plot([0, 1, 2], [0, 1, 0])
table = wandb.Table(columns=["x", "y"], data=[[i, (i - 5) ** 2] for i in range(11)])
y_true = rng.integers(0, 3, 60)
probas = rng.dirichlet(np.ones(3), 60)
frames = np.zeros((6, 3, 24, 32), np.uint8)
for t in range(6):
    frames[t, :, :, 4 * t : 4 * t + 6] = 255
run.log(
    {
        "figure": plt,
        "chart/line": wandb.plot.line(table, "x", "y", title="a parabola"),
        "chart/bar": wandb.plot.bar(wandb.Table(columns=["c", "n"], data=[["a", 3], ["b", 5]]), "c", "n"),
        "chart/confusion": wandb.plot.confusion_matrix(y_true=y_true, preds=probas.argmax(1)),
        "chart/roc": wandb.plot.roc_curve(y_true, probas),
        "clip": wandb.Video(frames, fps=6, format="webm", caption="a moving bar"),
        "tone": wandb.Audio(0.3 * np.sin(np.arange(4000) / 8000 * 2 * np.pi * 330), sample_rate=8000),
        "cloud": wandb.Object3D(rng.random((20, 3))),
        "plotly": wandb.Plotly({"data": [{"x": [0, 1, 2], "y": [1, 3, 2], "mode": "lines"}], "layout": {}}),
    },
    step=2,
)
try:  # a real plotly figure (plotly 6 sends numpy arrays as typed arrays), where plotly is installed
    import plotly.graph_objects as go
    run.log({"plotly/real": go.Figure(go.Scatter(x=np.arange(5), y=np.arange(5.0) ** 2, mode="markers"))}, step=2)
except ImportError:
    pass
run.finish()
print(run.id)
"""


def store_media_values_run(env: dict[str, str], tmp: Path) -> str:
    """Start a daemon for ``env``, run MEDIA_VALUES_RUN against it and stop it; returns the run's id."""
    from tests.support.daemons import Daemons

    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon.log").start()
        run_id = run_script(MEDIA_VALUES_RUN, env).stdout.strip().splitlines()[-1]
        assert daemon.terminate() == 0
    return run_id
