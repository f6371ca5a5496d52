"""The switch: ``import wandb`` and ``import trackio`` give trackio_shim, for code the user does not own.

Three ways to turn it on, all explicit (docs/integrations.md):

- ``TRACKIO_SHIM_AS=wandb,trackio`` in the environment. The wheel installs ``trackio_shim_switch.pth``, which
  at interpreter start calls :func:`activate_from_env` when (and only when) the variable is set;
- ``python -m trackio_shim [--as wandb,trackio] script.py args...`` (or ``-m package.module``);
- ``trackio_shim.install()`` in the user's own code, before the code that imports wandb.

What it does: a finder first on ``sys.meta_path`` answers ``import wandb`` (and ``wandb.sdk.lib`` and so on)
with the modules of :mod:`trackio_shim.switch.wandb`, and ``import trackio`` with :mod:`trackio_shim.switch.
trackio`. ``wandb.plot`` and ``wandb.tensorboard`` map to the shim modules named in :data:`ELSEWHERE`. The
same finder answers ``importlib.metadata.version("wandb")`` (Lightning and accelerate check the installed
version before they use wandb), so the switch works where the real wandb is not installed.

Where the real package *is* installed, the switch still wins (it was asked for) and says so once, at the first
import, naming the package it hides. Without one of the three requests nothing is replaced: installing
trackiod never shadows a wandb or trackio the user did not ask to replace.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from trackio_shim._warn import warn_once
from trackio_shim.errors import UsageError

#: The names the switch can take over, and the facade package that stands in for each.
FACADES = {"wandb": "trackio_shim.switch.wandb", "trackio": "trackio_shim.switch.trackio"}
#: Submodules of a taken-over name that live elsewhere in trackio_shim: the first of the candidates that exists.
ELSEWHERE: dict[str, tuple[str, ...]] = {
    "wandb.plot": ("trackio_shim.plot", "trackio_shim.media.plot"),
    "wandb.tensorboard": ("trackio_shim.tensorboard", "trackio_shim.sdk.tensorboard"),
}
#: The environment variable naming which of them to take over (comma-separated), read at interpreter start.
ENV_VAR = "TRACKIO_SHIM_AS"
#: The upstream version whose API each facade follows; reported (with a +trackio.shim local label) as the
#: facade's ``__version__`` and its distribution's version, so version checks such as Lightning's
#: ``wandb>=0.12.10`` pass.
API_VERSIONS = {"wandb": "0.31.0", "trackio": "0.43.0"}


def facade_version(name: str) -> str:
    return f"{API_VERSIONS[name]}+trackio.shim"


class _Alias(importlib.abc.Loader):
    """Loads a module under another name by handing back the module itself, imported under its own name.

    exec_module puts the target into ``sys.modules`` under the requested name; the import system returns what
    ``sys.modules`` holds, so ``import wandb`` and ``trackio_shim.switch.wandb`` are one module object with one
    state, and the target keeps its own ``__name__`` and ``__spec__``.
    """

    def __init__(self, target: str, top: str) -> None:
        self.target = target
        self.top = top

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder, replaced in sys.modules by exec_module

    def exec_module(self, module: ModuleType) -> None:
        if module.__name__ == self.top:
            _say_what_is_hidden(self.top)
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _Distribution(importlib.metadata.Distribution):
    """The metadata ``importlib.metadata`` reports for a name the switch took over."""

    def __init__(self, name: str) -> None:
        self._name = name

    def read_text(self, filename: str) -> str | None:
        if filename != "METADATA":
            return None
        return (
            f"Metadata-Version: 2.1\nName: {self._name}\nVersion: {facade_version(self._name)}\n"
            f"Summary: trackio_shim standing in for {self._name} ({ENV_VAR} or trackio_shim.install())\n"
        )

    def locate_file(self, path: Any) -> Path:
        return Path(__file__).parent / str(path)


class ShimFinder(importlib.abc.MetaPathFinder):
    """Answers imports and metadata look-ups of the names taken over; None for every other name."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        top, _, rest = fullname.partition(".")
        if top not in self.names:
            return None
        target_name = _target(top, rest)
        if target_name is None:
            return None  # the import fails as "No module named ...", naming the module asked for
        is_package = importlib.util.find_spec(target_name)
        return importlib.machinery.ModuleSpec(
            fullname,
            _Alias(target_name, top),
            is_package=bool(is_package and is_package.submodule_search_locations is not None),
        )

    def find_distributions(
        self, context: importlib.metadata.DistributionFinder.Context | None = None
    ) -> Iterator[importlib.metadata.Distribution]:
        context = context or importlib.metadata.DistributionFinder.Context()
        name = context.name
        # Only the interpreter's own path: a tool listing another environment (pip --target, --path) must
        # see what is really installed there.
        if name is None or context.path is not sys.path:
            return iter(())
        wanted = name.lower().replace("-", "_")
        return iter([_Distribution(wanted)] if wanted in self.names else [])


def _target(top: str, rest: str) -> str | None:
    """The trackio_shim module that ``top.rest`` means: the facade's, else one named in :data:`ELSEWHERE`."""
    facade = FACADES[top]
    if not rest:
        return facade
    candidates: tuple[str, ...] = (f"{facade}.{rest}", *ELSEWHERE.get(f"{top}.{rest}", ()))
    for candidate in candidates:
        try:
            if importlib.util.find_spec(candidate) is not None:
                return candidate
        except ModuleNotFoundError:  # a parent of the candidate does not exist
            continue
    return None


def _say_what_is_hidden(name: str) -> None:
    """One warning per process, at the first import, when a real package of that name is installed."""
    real = importlib.machinery.PathFinder.find_spec(name)
    if real is None:
        return
    where = list(real.submodule_search_locations or [str(real.origin)])
    warn_once(
        ("switch-hides", name),
        f"trackio_shim: `import {name}` gives trackio_shim, as asked ({ENV_VAR} or trackio_shim.install()); "
        f"the {name} installed at {next(iter(where), '?')} is not used in this process. Unset {ENV_VAR} "
        f"(or drop install()) to use it.",
    )


def installed() -> frozenset[str]:
    """The names the switch has taken over in this process (empty when it is off)."""
    names: set[str] = set()
    for finder in sys.meta_path:
        if isinstance(finder, ShimFinder):
            names |= finder.names
    return frozenset(names)


def parse_names(value: str | Iterable[str], where: str) -> tuple[str, ...]:
    """``"wandb,trackio"`` (or an iterable of names) as a tuple of known names.

    Raises:
        UsageError: a name the switch cannot take over (the text says ``where`` it came from).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(n.strip().lower() for n in items if n and n.strip()))
    unknown = [n for n in names if n not in FACADES]
    if unknown or not names:
        raise UsageError(
            f"{where}: {', '.join(unknown) or 'nothing'} cannot be switched; use one or more of {', '.join(FACADES)}"
        )
    return names


def install(names: str | Iterable[str] = ("wandb", "trackio")) -> frozenset[str]:
    """Make ``import wandb`` and/or ``import trackio`` give trackio_shim in this process and its children
    (``TRACKIO_SHIM_AS`` is exported for the .pth hook); returns the names now taken over. Call it before the
    code that imports them, at the top of the script (outside ``if __name__ == "__main__"``, so that spawned
    workers, which re-run the script's top, install it too).

    Raises:
        UsageError: an unknown name, or the real package of that name was imported already (it is in use,
            and replacing it half-way would leave two trackers).
    """
    wanted = parse_names(names, "trackio_shim.install()")
    for name in wanted:
        loaded = sys.modules.get(name)
        if loaded is not None and loaded is not _facade_if_loaded(name):
            raise UsageError(
                f"trackio_shim.install(): the real {name} was imported before the switch ({loaded!r}); call "
                f"install() before anything imports {name}, or use {ENV_VAR}={name} or `python -m trackio_shim`"
            )
    new = frozenset(wanted) - installed()
    if new:
        sys.meta_path.insert(0, ShimFinder(new))
        importlib.invalidate_caches()
    now = installed()
    # Child processes (DataLoader workers, spawned ranks) get the switch too, through the .pth hook.
    os.environ[ENV_VAR] = ",".join(sorted(now))
    return now


def uninstall() -> None:
    """Turn the switch off: later imports find the real packages again (for tests and notebooks).

    Modules already imported under the switched names are dropped from ``sys.modules``; objects that code
    kept from them stay what they were.
    """
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, ShimFinder)]
    os.environ.pop(ENV_VAR, None)
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if top in FACADES and sys.modules[name] is not None and _is_shim_module(sys.modules[name]):
            del sys.modules[name]


def activate_from_env() -> None:
    """The ``.pth`` hook: take over the names ``TRACKIO_SHIM_AS`` lists; a bad value warns and changes nothing."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return
    try:
        install(parse_names(value, ENV_VAR))
    except UsageError as exc:
        warn_once(("switch-env", value), f"trackio_shim: {exc}")


def _facade_if_loaded(name: str) -> ModuleType | None:
    return sys.modules.get(FACADES[name])


def _is_shim_module(module: ModuleType) -> bool:
    return str(getattr(module, "__name__", "")).startswith("trackio_shim")


#: The names of trackio_shim that follow the current run; a facade looks them up on every access.
DYNAMIC = frozenset({"run", "config", "summary"})


def delegate(facade: str, namespace: dict[str, Any], name: str) -> Any:
    """A facade's module ``__getattr__``: ``name`` from the facade's submodules, else from trackio_shim.

    Static names are cached in the facade's ``namespace`` (later lookups are plain attribute reads); the
    run-following ones (:data:`DYNAMIC`) are read from trackio_shim every time.

    Raises:
        AttributeError: neither the facade nor trackio_shim has ``name``.
    """
    top = facade.rpartition(".")[2]
    if name in DYNAMIC:
        import trackio_shim

        return getattr(trackio_shim, name)
    if not name.startswith("__"):
        submodule = _target(top, name)
        if submodule is not None:
            value: Any = importlib.import_module(submodule)
            namespace[name] = value
            return value
        import trackio_shim

        try:
            value = getattr(trackio_shim, name)
        except AttributeError:
            pass
        else:
            namespace[name] = value
            return value
    raise AttributeError(
        f"module {top!r} (trackio_shim, through the switch) has no attribute {name!r}; docs/api.md lists what "
        "trackio_shim does not provide"
    )
