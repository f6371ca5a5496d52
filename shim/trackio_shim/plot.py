"""``wandb.plot``: line, scatter, bar, histogram, line_series, confusion_matrix, pr_curve, roc_curve and
plot_table, each returning a chart to pass to ``log()`` (implemented in :mod:`trackio_shim.media.plot`)."""

from trackio_shim.media.plot import (
    CustomChart,
    bar,
    confusion_matrix,
    histogram,
    line,
    line_series,
    plot_table,
    pr_curve,
    roc_curve,
    scatter,
)

__all__ = [
    "CustomChart",
    "bar",
    "confusion_matrix",
    "histogram",
    "line",
    "line_series",
    "plot_table",
    "pr_curve",
    "roc_curve",
    "scatter",
]
