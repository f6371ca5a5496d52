"""wandb.plot: charts stored as a Table plus a chart spec (wandb's preset name, its fields and strings).

Each function takes wandb's arguments and returns a :class:`CustomChart` to pass to ``log()``. The daemon stores
the table as a file and the spec beside it; the run page draws the chart from the two. Like wandb, the curves
(pr_curve, roc_curve) and the confusion matrix are computed here, when the caller asks for them, with numpy:
the stored table is the curve, as in wandb, so a reader gets the same rows from either tracker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from trackio_shim.errors import MediaError
from trackio_shim.media import Media
from trackio_shim.media.table import Table

if TYPE_CHECKING:
    from trackio_shim.media.wire import WireContext

#: wandb's preset names and the chart the dashboard draws for each.
PRESETS = {
    "wandb/line/v0": "line",
    "wandb/scatter/v0": "scatter",
    "wandb/bar/v0": "bar",
    "wandb/histogram/v0": "histogram",
    "wandb/lineseries/v0": "line_series",
    "wandb/confusion_matrix/v1": "confusion_matrix",
    "wandb/area-under-curve/v0": "curve",
}
#: Rows a computed curve keeps at most per class (wandb caps a table at 10,000 rows).
MAX_CURVE_POINTS = 1000


class CustomChart(Media):
    """A chart made of a :class:`Table` and a chart preset, as wandb's ``CustomChart`` (from ``plot_table`` and
    the ``wandb.plot`` functions). ``fields`` maps the preset's roles (x, y, label, ...) to column names."""

    def __init__(
        self,
        table: Table,
        spec_name: str,
        fields: dict[str, Any],
        string_fields: dict[str, Any] | None = None,
        split_table: bool = False,
    ) -> None:
        self.table = table
        self.spec_name = str(spec_name)
        self.fields = {str(k): v for k, v in fields.items()}
        self.string_fields = {str(k): str(v) for k, v in (string_fields or {}).items()}
        self.split_table = split_table
        if not isinstance(table, Table):
            self._problem = f"a chart needs a Table, not {type(table).__qualname__}"
            return
        for role, column in self.fields.items():
            if column is not None and str(column) not in table.columns:
                self._problem = f"the chart's {role}={column!r} is not a column of its table {table.columns}"
                return

    def _wire(self, key: str, ctx: WireContext, out: Any) -> None:
        if self._problem:
            raise MediaError(self._problem)
        out.media[key] = {
            "_type": "plot",
            "spec": self.spec_name,
            "chart": PRESETS.get(self.spec_name, "custom"),
            "fields": {k: None if v is None else str(v) for k, v in self.fields.items()},
            "strings": self.string_fields,
            "table": self.table.payload(ctx),
        }


def plot_table(
    vega_spec_name: str,
    data_table: Table,
    fields: dict[str, Any],
    string_fields: dict[str, Any] | None = None,
    split_table: bool = False,
) -> CustomChart:
    """A chart of ``data_table`` with the preset ``vega_spec_name`` (as ``wandb.plot_table``). wandb's presets
    are drawn by the dashboard; any other name is stored and shown as its table."""
    return CustomChart(data_table, vega_spec_name, fields, string_fields, split_table)


def line(
    table: Table, x: str, y: str, stroke: str | None = None, title: str = "", split_table: bool = False
) -> CustomChart:
    """A line chart of column ``y`` over column ``x``, one line per value of ``stroke`` when given."""
    return CustomChart(table, "wandb/line/v0", {"x": x, "y": y, "stroke": stroke}, {"title": title}, split_table)


def scatter(table: Table, x: str, y: str, title: str = "", split_table: bool = False) -> CustomChart:
    """A scatter plot of column ``y`` against column ``x``."""
    return CustomChart(table, "wandb/scatter/v0", {"x": x, "y": y}, {"title": title}, split_table)


def bar(table: Table, label: str, value: str, title: str = "", split_table: bool = False) -> CustomChart:
    """A bar per row: its ``label`` column names it, its ``value`` column sizes it."""
    return CustomChart(table, "wandb/bar/v0", {"label": label, "value": value}, {"title": title}, split_table)


def histogram(table: Table, value: str, title: str = "", split_table: bool = False) -> CustomChart:
    """A histogram of column ``value`` (binned when drawn)."""
    return CustomChart(table, "wandb/histogram/v0", {"value": value}, {"title": title}, split_table)


def line_series(
    xs: Iterable[Iterable[Any]] | Iterable[Any],
    ys: Iterable[Iterable[Any]],
    keys: Iterable[str] | None = None,
    title: str = "",
    xname: str = "x",
    split_table: bool = False,
) -> CustomChart:
    """Several lines on one chart: ``ys`` is a list of series, ``xs`` one x series shared by all or one per
    series, ``keys`` their names (``line_0``, ``line_1``, ... by default).

    Raises:
        ValueError: the numbers of x series, y series and keys do not match (as wandb).
    """
    y_series = [list(y) for y in ys]
    x_list = list(xs)
    shared = not x_list or not isinstance(x_list[0], Iterable) or isinstance(x_list[0], (str, bytes))
    x_series = [x_list] * len(y_series) if shared else [list(x) for x in x_list]
    if len(x_series) != len(y_series):
        raise ValueError(f"line_series: {len(x_series)} x series for {len(y_series)} y series")
    names = [f"line_{i}" for i in range(len(y_series))] if keys is None else [str(k) for k in keys]
    if len(names) != len(y_series):
        raise ValueError(f"line_series: {len(names)} keys for {len(y_series)} y series")
    rows = [
        [x, name, y] for name, x_values, y_values in zip(names, x_series, y_series) for x, y in zip(x_values, y_values)
    ]
    return CustomChart(
        Table(columns=["step", "lineKey", "lineVal"], data=rows),
        "wandb/lineseries/v0",
        {"step": "step", "lineKey": "lineKey", "lineVal": "lineVal"},
        {"title": title, "xname": xname},
        split_table,
    )


def confusion_matrix(
    probs: Sequence[Sequence[float]] | None = None,
    y_true: Sequence[Any] | None = None,
    preds: Sequence[Any] | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Confusion Matrix Curve",
    split_table: bool = False,
) -> CustomChart:
    """A confusion matrix of ``y_true`` against ``preds`` (or the argmax of ``probs``). With ``class_names``
    the labels are indices into it; without, the classes are the sorted labels seen, named ``Class_1``, ...

    Raises:
        ValueError: both or neither of probs and preds, lengths that differ, or more classes than names.
    """
    import numpy as np

    if (probs is None) == (preds is None):
        raise ValueError("confusion_matrix: give either probs or preds, not both or neither")
    if y_true is None:
        raise ValueError("confusion_matrix: y_true is required")
    truth = np.asarray(y_true).tolist()
    predicted = np.argmax(np.asarray(probs), axis=1).tolist() if probs is not None else np.asarray(preds).tolist()
    if len(predicted) != len(truth):
        raise ValueError(f"confusion_matrix: {len(predicted)} predictions for {len(truth)} true labels")
    if class_names is not None:
        names = [str(c) for c in class_names]
        classes: list[Any] = list(range(len(names)))
        unknown = sorted({*truth, *predicted} - set(classes), key=str)
        if unknown:
            raise ValueError(
                f"confusion_matrix: labels {unknown[:5]} are not indices into the {len(names)} class_names"
            )
    else:
        classes = sorted({*truth, *predicted})
        names = [f"Class_{i + 1}" for i in range(len(classes))]
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, ([index[t] for t in truth], [index[p] for p in predicted]), 1)
    rows = [[names[i], names[j], int(counts[i, j])] for i in range(len(names)) for j in range(len(names))]
    return CustomChart(
        Table(columns=["Actual", "Predicted", "nPredictions"], data=rows),
        "wandb/confusion_matrix/v1",
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": title},
        split_table,
    )


def _per_class(
    y_true: Any, y_probas: Any, labels: list[str] | None, classes_to_plot: list[Any] | None, what: str
) -> list[tuple[str, Any, Any]]:
    """``(name, is_positive, score)`` for each class to plot, one-vs-rest over the columns of ``y_probas``."""
    import numpy as np

    truth = np.asarray(y_true)
    probas = np.asarray(y_probas, dtype=np.float64)
    if probas.ndim == 1:
        probas = np.stack([1.0 - probas, probas], axis=1)
    if probas.ndim != 2 or probas.shape[0] != truth.shape[0]:
        raise ValueError(f"{what}: y_probas must be (samples, classes) with one row per label of y_true")
    classes = np.unique(truth)
    if probas.shape[1] < len(classes):
        raise ValueError(f"{what}: y_probas has {probas.shape[1]} columns for {len(classes)} classes in y_true")
    out = []
    for i, cls in enumerate(classes):
        if classes_to_plot is not None and cls not in classes_to_plot:
            continue
        name = (
            str(labels[i])
            if labels is not None and i < len(labels)
            else str(cls.item() if hasattr(cls, "item") else cls)
        )
        out.append((name, truth == cls, probas[:, i]))
    return out


def _ranked_counts(positive: Any, score: Any) -> tuple[Any, Any]:
    """Cumulative true and false positives at each distinct score, from the highest score down."""
    import numpy as np

    order = np.argsort(-score, kind="stable")
    score, positive = score[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]  # the last index of each distinct score
    tp = np.cumsum(positive)[last]
    return tp, (last + 1) - tp


def pr_curve(
    y_true: Iterable[Any] | None = None,
    y_probas: Iterable[Any] | None = None,
    labels: list[str] | None = None,
    classes_to_plot: list[Any] | None = None,
    interp_size: int = 21,
    title: str = "Precision-Recall Curve",
    split_table: bool = False,
) -> CustomChart:
    """Precision against recall for each class (one-vs-rest), precision interpolated at ``interp_size``
    recall levels from 0 to 1 (the best precision at that recall or more), as wandb's table holds it.

    Raises:
        ValueError: y_true or y_probas is missing, or their shapes do not match.
    """
    import numpy as np

    if y_true is None or y_probas is None:
        raise ValueError("pr_curve: y_true and y_probas are required")
    recall_levels = np.linspace(0.0, 1.0, int(interp_size))
    rows = []
    for name, positive, score in _per_class(y_true, y_probas, labels, classes_to_plot, "pr_curve"):
        tp, fp = _ranked_counts(positive, score)
        total = max(int(positive.sum()), 1)
        precision = np.r_[1.0, tp / np.maximum(tp + fp, 1)]
        recall = np.r_[0.0, tp / total]
        # The best precision reached at each recall or beyond (a running max from the right).
        best = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, recall_levels, side="left")
        values = np.where(at < best.size, best[np.minimum(at, best.size - 1)], 0.0)
        rows += [[name, round(float(p), 3), round(float(r), 3)] for p, r in zip(values, recall_levels)]
    return CustomChart(
        Table(columns=["class", "precision", "recall"], data=rows),
        "wandb/area-under-curve/v0",
        {"x": "recall", "y": "precision", "class": "class"},
        {"title": title, "x-axis-title": "Recall", "y-axis-title": "Precision"},
        split_table,
    )


def roc_curve(
    y_true: Sequence[Any],
    y_probas: Sequence[Sequence[float]] | None = None,
    labels: list[str] | None = None,
    classes_to_plot: list[Any] | None = None,
    title: str = "ROC Curve",
    split_table: bool = False,
) -> CustomChart:
    """True positive rate against false positive rate for each class (one-vs-rest), at most
    :data:`MAX_CURVE_POINTS` points per class.

    Raises:
        ValueError: y_probas is missing, or the shapes do not match.
    """
    import numpy as np

    if y_probas is None:
        raise ValueError("roc_curve: y_probas is required")
    rows = []
    for name, positive, score in _per_class(y_true, y_probas, labels, classes_to_plot, "roc_curve"):
        tp, fp = _ranked_counts(positive, score)
        tpr = np.r_[0.0, tp / max(int(positive.sum()), 1)]
        fpr = np.r_[0.0, fp / max(int((~positive).sum()), 1)]
        keep = np.unique(np.linspace(0, tpr.size - 1, min(tpr.size, MAX_CURVE_POINTS)).round().astype(int))
        rows += [[name, round(float(fpr[i]), 3), round(float(tpr[i]), 3)] for i in keep]
    return CustomChart(
        Table(columns=["class", "fpr", "tpr"], data=rows),
        "wandb/area-under-curve/v0",
        {"x": "fpr", "y": "tpr", "class": "class"},
        {"title": title, "x-axis-title": "False positive rate", "y-axis-title": "True positive rate"},
        split_table,
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
