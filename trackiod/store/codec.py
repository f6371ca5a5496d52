"""How a chunk's points are packed into BLOBs (docs/storage.md, "Series"), written once for every reader and writer.

A chunk of a run's series (``chunks``) or of a node series (``system_chunks``) keeps its columns as packed
little-endian arrays: steps as int64, timestamps and values as float64. The writer, the readers, sync (both
ways) and the energy book all go through these functions, so the byte format is stated in one place. Decoding
returns a read-only view of the bytes (no copy): copy an array before changing it in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Points per sealed chunk of a series (docs/storage.md, "Series").
CHUNK_POINTS = 1024

_STEP = "<i8"
_FLOAT = "<f8"


def encode_steps(steps: Any) -> bytes:
    """Steps (an array or a sequence of ints) as a ``steps`` BLOB."""
    return np.asarray(steps, _STEP).tobytes()


def encode_floats(values: Any) -> bytes:
    """Timestamps or values (an array or a sequence of numbers) as a ``times`` or ``vals`` BLOB."""
    return np.asarray(values, _FLOAT).tobytes()


def decode_steps(blob: bytes) -> np.ndarray:
    """A ``steps`` BLOB (or several joined) as an int64 array."""
    return np.frombuffer(blob, _STEP)


def decode_floats(blob: bytes) -> np.ndarray:
    """A ``times`` or ``vals`` BLOB (or several joined) as a float64 array."""
    return np.frombuffer(blob, _FLOAT)


def evenly_spaced(steps: np.ndarray) -> bool:
    """Whether a chunk's steps are ``steps[0], steps[0] + d, ..., steps[-1]`` for some d > 0 (its ``even`` flag).

    Written with the chunk so that readers that need only a few of its points (a sampled history) know every
    step of it from ``step_min``, ``step_max`` and ``n`` without reading the ``steps`` BLOB.
    """
    if steps.size < 2:
        return True
    gap = int(steps[1]) - int(steps[0])
    if gap <= 0 or int(steps[-1]) - int(steps[0]) != gap * (steps.size - 1):
        return False
    return bool((steps[1:] - steps[:-1] == gap).all())
