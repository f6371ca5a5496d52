"""The identity of one series: which run, which key, under which metric context, from which rank.

A series is named by this typed key from the batch to the store and the mirrors, never by an encoded string:
the store turns it into the key id its tables use (:meth:`trackiod.store.writer.Store.series_id`), and
every other consumer decides for itself what a context or a rank means to it (docs/storage.md, "Metric
context"; docs/ranks.md). It lives in the store layer because the store is the lowest layer that needs it.
"""

from __future__ import annotations

from typing import NamedTuple


class SeriesKey(NamedTuple):
    """``(run_id, name, context_id, rank)``; no context (None) and rank 0 (None) are the common case."""

    run_id: int
    name: str
    #: ``contexts.id`` of the metric context the values were logged under (``log(..., context=...)``).
    context_id: int | None = None
    #: The rank > 0 of a distributed run that logged the values; rank 0's series are the run's own.
    rank: int | None = None
