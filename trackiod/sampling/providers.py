"""The GPU provider ``TRACKIOD_NVML`` selects (docs/settings.md): ``auto`` (pynvml), ``off``, or ``fake:<script.json>``.

Providers are named in :data:`PROVIDERS` as "module:class" and imported only when selected, so no production
module imports the tests' scripted NVML (trackiod.testing.fake_nvml) and a node without pynvml never imports it.
"""

from __future__ import annotations

import importlib

from trackiod.sampling.gpu import NvmlProvider

#: ``TRACKIOD_NVML`` value (before any ``:``) -> "module:class" of its provider, and whether it takes an argument
#: (the text after ``:``, e.g. the fake's script path).
PROVIDERS = {
    "auto": ("trackiod.sampling.nvml:PynvmlProvider", False),
    "fake": ("trackiod.testing.fake_nvml:ScriptedNvml", True),
}


def make_provider(spec: str) -> NvmlProvider | None:
    """The provider ``TRACKIOD_NVML`` names: ``auto``, ``off`` (None), or ``fake:<path>`` (tests only).

    Raises:
        ValueError: the value is none of those.
    """
    if spec == "off":
        return None
    name, colon, argument = spec.partition(":")
    entry = PROVIDERS.get(name)
    if entry is None or bool(colon) != entry[1] or (colon and not argument):
        raise ValueError(f"TRACKIOD_NVML={spec!r} is not one of auto, off, fake:<script.json>")
    target, takes_argument = entry
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: NvmlProvider = cls(argument) if takes_argument else cls()
    return provider
