"""Metric context (``log(..., context=...)``): the one check and canonical form of a context, before it gets an id.

A context names the conditions a value was measured under (a split, a subset); the store keeps each distinct
canonical JSON once and series refer to it by id, so two spellings of one context must encode the same.
"""

from __future__ import annotations

import json
from typing import Any

from trackio_shim.errors import FrameRejected

MAX_CONTEXT_ITEMS = 32
MAX_CONTEXT_CHARS = 1024


def canonical_context(context: Any) -> str | None:
    """A context as canonical JSON (sorted keys, no spaces); None for an empty one.

    Raises:
        FrameRejected: not a dict of str keys to str, int, float or bool values, or too large.
    """
    if not isinstance(context, dict):
        raise FrameRejected(f"context must be a dict, not {type(context).__name__}")
    if not context:
        return None
    if len(context) > MAX_CONTEXT_ITEMS:
        raise FrameRejected(f"a context has at most {MAX_CONTEXT_ITEMS} entries")
    for key, value in context.items():
        if not isinstance(key, str) or not key:
            raise FrameRejected(f"context keys must be non-empty strings, not {key!r}")
        if not isinstance(value, (str, int, float, bool)):
            raise FrameRejected(f"context[{key!r}] must be a str, int, float or bool, not {type(value).__name__}")
    body = json.dumps(context, sort_keys=True, separators=(",", ":"))
    if len(body) > MAX_CONTEXT_CHARS:
        raise FrameRejected(f"a context encodes to at most {MAX_CONTEXT_CHARS} characters")
    return body
