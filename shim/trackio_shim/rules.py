"""The rules the shim and the daemon must agree on, stated once: both sides import them from here.

The shim checks early, so that a mistake surfaces as a UsageError (or a warning) at the caller's line; the
daemon checks again, because a frame may come from any client, and refuses what breaks a rule as malformed.
Both use the same function, so the two checks can never drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Characters of a generated run id (lower case and digits: a folder name anywhere, a readable URL part).
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 8
#: Longest project name, run id and run name the daemon stores.
MAX_NAME_CHARS = 256
#: The aggregates define_metric(summary=...) may ask for.
SUMMARY_KINDS = frozenset({"min", "max", "mean", "last", "first", "none", "best"})
#: define_metric(goal=...): which way "best" points.
GOALS = ("minimize", "maximize")
#: How log() copies tensors to the host: after the device is done (no sync) or at once (a device sync).
COPY_MODES = ("deferred", "sync")
#: Bounds on one metric context: entries, and length of its canonical JSON (it keys a row in the store).
MAX_CONTEXT_ITEMS = 32
MAX_CONTEXT_CHARS = 1024


def new_run_id() -> str:
    """A fresh random run id (``ID_LENGTH`` characters of ``ID_ALPHABET``)."""
    import secrets  # here: `import trackio_shim` loads this module, and its import time is budgeted

    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def canonical_context(context: Any) -> str | None:
    """A metric context as canonical JSON (sorted keys, no spaces); None for an empty one.

    Raises:
        ValueError: not a mapping of non-empty str keys to str, int, float or bool values, or over the bounds.
    """
    if not isinstance(context, Mapping):
        raise ValueError(f"context must be a dict, not {type(context).__name__}")
    if not context:
        return None
    if len(context) > MAX_CONTEXT_ITEMS:
        raise ValueError(f"a context has at most {MAX_CONTEXT_ITEMS} entries")
    for key, value in context.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"context keys must be non-empty strings, not {key!r}")
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"context[{key!r}] must be a str, int, float or bool, not {type(value).__name__}")
    body = json.dumps(dict(context), sort_keys=True, separators=(",", ":"))
    if len(body) > MAX_CONTEXT_CHARS:
        raise ValueError(f"a context encodes to at most {MAX_CONTEXT_CHARS} characters")
    return body
