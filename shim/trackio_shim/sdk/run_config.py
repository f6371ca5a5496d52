"""wandb.config and wandb.summary of a run.

Named run_config, not config: a submodule ``config`` would shadow the package attribute ``trackio_shim.config``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.errors import ConfigError, UsageError
from trackio_shim.sdk.run_link import RunLink
from trackio_shim.session.encoding import friendly_items


def as_mapping(obj: Any, what: str) -> dict[Any, Any]:
    """A dict from a dict, an argparse.Namespace or any object with ``__dict__`` (absl-like flags)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return {k: v for k, v in obj.items()}  # keys made str by friendly_items, which never raises
    if hasattr(obj, "__dict__"):  # argparse.Namespace, absl-like flag objects
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    raise UsageError(f"{what} must be a dict or an argparse.Namespace, not {type(obj).__name__}")


class Config:
    """wandb.config: attribute and item access; every change is sent to the daemon and persisted."""

    _items: dict[str, Any]
    _link: RunLink | None
    _allow_val_change: bool

    def __init__(
        self, link: RunLink | None = None, allow_val_change: bool = False, items: Mapping[str, Any] | None = None
    ) -> None:
        """``items``: the config the run starts with (already wire-friendly; not sent again)."""
        object.__setattr__(self, "_items", dict(items or {}))
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_allow_val_change", allow_val_change)

    def _merge(self, items: Mapping[str, Any], allow_val_change: bool, only_new: bool = False) -> None:
        changed: dict[str, Any] = {}
        allow = allow_val_change or self._allow_val_change
        for key, value in friendly_items(items, "config").items():
            if key in self._items:
                if only_new or self._items[key] == value:
                    continue
                if not allow:
                    raise ConfigError(
                        f"Attempted to change value of key {key!r} from {self._items[key]!r} to {value!r}. "
                        "If you really want to do this, pass allow_val_change=True to config.update()"
                    )
            changed[key] = value
        if not changed:
            return
        self._items.update(changed)
        if self._link is not None:
            self._link.send(P.CONFIG, changed)

    def update(self, d: Any, allow_val_change: bool = False) -> None:
        """Merge ``d`` (dict or Namespace). Changing an existing key needs ``allow_val_change=True``.

        Raises:
            ConfigError: an existing key would change and ``allow_val_change`` is False.
        """
        self._merge(as_mapping(d, "config"), allow_val_change)

    def setdefaults(self, d: Any) -> None:
        """Set the keys of ``d`` that are not set yet; existing values are kept."""
        self._merge(as_mapping(d, "config"), allow_val_change=False, only_new=True)

    def as_dict(self) -> dict[str, Any]:
        """A copy of the config as a plain dict."""
        return dict(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def values(self) -> Any:
        return self._items.values()

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._merge({key: value}, allow_val_change=False)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._merge({key: value}, allow_val_change=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Config({self._items!r})"


class Summary:
    """wandb.summary: the daemon keeps it (last value per key, or define_metric's aggregate).

    Reads ask the daemon after the run's frames are acknowledged. Explicit assignments are sent as they
    happen and win until the key is logged again. When no daemon answers, reads fall back to the values
    assigned in this process, with a one-time warning.
    """

    def __init__(self, link: RunLink | None = None) -> None:
        self._link = link
        self._local: dict[str, Any] = {}

    def _snapshot(self) -> dict[str, Any]:
        link = self._link
        if link is None or link.client is None:
            return dict(self._local)
        remote = link.query("summary", {"handle": link.handle})
        if remote is None:
            warn_once(
                "summary-offline",
                "trackio_shim: trackiod did not answer; summary shows only values set in this process",
            )
            return dict(self._local)
        return dict(remote)

    def __getitem__(self, key: str) -> Any:
        return self._snapshot()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._snapshot().get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, d: Mapping[str, Any]) -> None:
        """Set summary values explicitly; they are persisted and win until the key is logged again."""
        items = friendly_items(d, "summary")
        self._local.update(items)
        if self._link is not None:
            self._link.send(P.SUMMARY, items)

    def keys(self) -> Any:
        return self._snapshot().keys()

    def items(self) -> Any:
        return self._snapshot().items()

    def __contains__(self, key: object) -> bool:
        return key in self._snapshot()

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __repr__(self) -> str:
        return f"Summary({self._snapshot()!r})"
