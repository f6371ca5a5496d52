"""The rank view of a chart (``/api/chart?ranks=``): a multi-rank run as rank 0, every rank, or the mean of its
ranks over a min-max band (docs/dashboard.md, "Rank view"; docs/ranks.md for how ranks are stored).

``ranks=0`` (the default) is the plain series, which is rank 0's. ``ranks=all`` adds one series per other rank
(``"rank": r`` in its header entry). ``ranks=band`` replaces a multi-rank run's series by the mean across its ranks
at each step and adds its ``"rank": "min"`` and ``"rank": "max"`` series, all from
:func:`trackiod.read.ranks.rank_aggregates` (computed at read time, non-finite values left out). The band is by
step: on a time or metric x axis a band request answers rank 0 and says so in the header (``rank_note``).
"""

from __future__ import annotations

from typing import Any

import apsw
import numpy as np

from trackiod.dashboard.reads import series_xy
from trackiod.read.ranks import rank_aggregates, rank_key_ids

MODES = ("0", "all", "band")
#: x axes a rank series can be drawn on (a metric x axis is rank 0's metric, not the rank's).
RANK_AXES = ("step", "time", "relative")

Series = tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]


def rank_series(
    conn: apsw.Connection, info: dict[str, Any], key: str, xaxis: str, after: int | None, mode: str
) -> list[Series] | None:
    """``[(header entry extras, steps, x, y)]`` for one run's ranks in ``mode``, replacing its plain series;
    None when the plain series stands as it is (``ranks=0``, a single-process run, or an axis the mode lacks)."""
    if mode == "0" or xaxis not in RANK_AXES:
        return None
    found = rank_key_ids(conn, info["id"], key)
    if len(found) < 2:
        return None
    if mode == "all":
        out: list[Series] = []
        for rank in sorted(found):
            steps, x, y = series_xy(conn, info, key, xaxis, after, found[rank][0])
            out.append(({"rank": rank} if rank else {"ranks": len(found)}, steps, x, y))
        return out
    if xaxis != "step":
        return None
    agg = rank_aggregates(conn, info["id"], key, min_step=None if after is None else after + 1)
    steps = agg["steps"].astype(np.int64)
    return [
        ({"ranks": len(found)}, steps, steps, agg["mean"]),
        ({"rank": "min"}, steps, steps, agg["min"]),
        ({"rank": "max"}, steps, steps, agg["max"]),
    ]
