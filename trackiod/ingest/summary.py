"""Run summaries: the last value of each key, or the aggregates define_metric asks for.

Aggregates are updated once per flush from whole arrays (numpy), never per point. Explicit values
(``run.summary["best"] = x``) win until the same key is logged again, as in wandb.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import numpy as np


def _clean(value: float) -> Any:
    # JSON has no NaN/inf; keep them readable and round-trippable as strings.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


class RunSummary:
    """Aggregate state of one run's summary; serialisable with :meth:`state` / :meth:`from_state`."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # key -> [count, sum, min, max, first, last]
        self.texts: dict[str, str] = {}
        self.explicit: dict[str, Any] = {}
        self.defs: list[dict[str, Any]] = []

    @classmethod
    def from_state(cls, state: dict[str, Any], defs: list[dict[str, Any]]) -> RunSummary:
        summary = cls()
        summary.stats = {k: list(v) for k, v in state.get("stats", {}).items()}
        summary.texts = dict(state.get("texts", {}))
        summary.explicit = dict(state.get("explicit", {}))
        summary.defs = list(defs)
        return summary

    def state(self) -> dict[str, Any]:
        return {"stats": self.stats, "texts": self.texts, "explicit": self.explicit}

    def add_numeric(self, key: str, values: np.ndarray) -> None:
        """Fold a batch of values (in logging order) into the key's aggregates."""
        if values.size == 0:
            return
        finite = values[~np.isnan(values)]
        lo = float(finite.min()) if finite.size else math.nan
        hi = float(finite.max()) if finite.size else math.nan
        total = float(finite.sum()) if finite.size else 0.0
        current = self.stats.get(key)
        if current is None:
            self.stats[key] = [float(finite.size), total, lo, hi, float(values[0]), float(values[-1])]
        else:
            current[0] += finite.size
            current[1] += total
            current[2] = lo if math.isnan(current[2]) else min(current[2], lo) if finite.size else current[2]
            current[3] = hi if math.isnan(current[3]) else max(current[3], hi) if finite.size else current[3]
            current[5] = float(values[-1])
        self.explicit.pop(key, None)

    def add_text(self, key: str, value: str) -> None:
        self.texts[key] = value
        self.explicit.pop(key, None)

    def set_explicit(self, items: dict[str, Any]) -> None:
        self.explicit.update(items)

    def define(self, spec: dict[str, Any]) -> None:
        self.defs = [d for d in self.defs if d.get("name") != spec.get("name")] + [spec]

    def _kinds(self, key: str) -> list[str]:
        exact = [d for d in self.defs if d.get("name") == key]
        matches = exact or [d for d in self.defs if fnmatch.fnmatchcase(key, str(d.get("name")))]
        return list(matches[-1].get("summary") or []) if matches else []

    def view(self) -> dict[str, Any]:
        """The summary as users see it: ``{key: last}`` or ``{key: {"min": .., "max": ..}}`` per define_metric."""
        out: dict[str, Any] = {}
        for key, (count, total, lo, hi, first, last) in self.stats.items():
            kinds = self._kinds(key)
            if "none" in kinds:
                continue
            if not kinds or kinds == ["last"]:
                out[key] = _clean(last)
                continue
            goal = next((d.get("goal") for d in self.defs if fnmatch.fnmatchcase(key, str(d.get("name")))), None)
            table = {
                "min": lo,
                "max": hi,
                "mean": total / count if count else math.nan,
                "first": first,
                "last": last,
                "best": hi if goal == "maximize" else lo,
            }
            out[key] = {kind: _clean(table[kind]) for kind in kinds}
        for key, text in self.texts.items():
            if "none" not in self._kinds(key):
                out[key] = text
        out.update(self.explicit)
        return out
