"""``wandb.util`` under the switch: the helpers wandb's examples call."""

from __future__ import annotations

import secrets

from trackio_shim.rules import ID_ALPHABET


def generate_id(length: int = 8) -> str:
    """A random id of ``length`` characters (lowercase letters and digits), usable as ``init(id=...)``."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))
