"""``import trackio`` under the switch (trackio_shim.switch): trackio_shim with trackio's names and rules.

Every name trackio_shim exports is here, looked up there on first use (``trackio.config`` on every use).
:func:`init` takes trackio's signature: runs are found by name (``resume="allow"`` continues the newest run
of that name, ``"must"`` requires one, ``"never"``, the default, always starts a new one), and a new init()
finishes the run before it, as trackio's does. The Hugging Face
options trackio has (``server_url``, ``bucket_id``, ``private``, webhooks, system logging) are accepted; one
given a value other than its default is warned about once and ignored, since trackiod keeps runs locally
(``trackiod sync`` mirrors them to the Hub).
"""

from __future__ import annotations

from typing import Any

import trackio_shim
from trackio_shim import finish, log
from trackio_shim._warn import warn_once
from trackio_shim.sdk.wandb_run import Run
from trackio_shim.switch import delegate, facade_version
from trackio_shim.switch.trackio import context_vars

__version__ = facade_version("trackio")
__all__ = ["context_vars", "finish", "freeze", "init", "log", "sync"]

#: trackio.init()'s options that have no meaning for a local daemon, with trackio's defaults.
_HUB_OPTIONS: dict[str, Any] = {
    "server_url": None,
    "bucket_id": None,
    "private": None,
    "embed": True,
    "auto_log_gpu": None,
    "gpu_log_interval": 10.0,
    "auto_log_cpu": None,
    "cpu_log_interval": 10.0,
    "webhook_url": None,
    "webhook_min_level": None,
}


def __getattr__(name: str) -> Any:
    return delegate(__name__, globals(), name)


def init(
    project: str,
    name: str | None = None,
    group: str | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    config: dict[str, Any] | None = None,
    resume: str = "never",
    settings: Any = None,
    **options: Any,
) -> Run:
    """``trackio.init``: a run found by name (trackio's rule); see the module's docstring for the options."""
    for key, value in list(options.items()):
        if key in _HUB_OPTIONS:
            del options[key]
            if value != _HUB_OPTIONS[key]:
                warn_once(
                    ("trackio-option", key),
                    f"trackio_shim: trackio.init({key}=...) is a Hugging Face option; trackiod keeps runs "
                    "locally, so it is ignored",
                )
    return trackio_shim.init(
        project=project,
        name=name,
        group=group,
        space_id=space_id,
        dataset_id=dataset_id,
        config=config,
        resume=resume,
        settings=settings,
        resume_by="name",
        reinit="finish_previous",
        **options,
    )


def _not_published(what: str) -> None:
    warn_once(
        ("trackio-publish", what),
        f"trackio_shim: trackio.{what}() publishes to a Hugging Face Space; trackiod keeps runs locally "
        "(`trackiod sync` mirrors them to the Hub), so nothing was published",
    )


def freeze(*args: Any, **kwargs: Any) -> None:
    """Accepted (transformers calls it after training when a Space is set); publishes nothing, returns None."""
    _not_published("freeze")


def sync(*args: Any, **kwargs: Any) -> None:
    """Accepted (transformers calls it on push_to_hub); publishes nothing, returns None."""
    _not_published("sync")
