"""``trackiod deploy``: publish a read-only dashboard Space that reads a synced dataset (docs/sync.md, "Share").

The Space is a small Gradio app (``trackiod/space_app/``) plus a config file naming the dataset. It is
generated here and pushed with one Hub commit; nothing else about the Space is changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from trackio_shim.errors import UsageError
from trackiod.sync.hub import Hub

APP_DIR = Path(__file__).parent / "space_app"

_README = """---
title: {title}
emoji: 📈
colorFrom: indigo
colorTo: blue
sdk: gradio
app_file: app.py
pinned: false
tags:
  - trackiod
---

# {space}

A read-only trackiod dashboard. It reads the Parquet dataset
[`{dataset}`](https://huggingface.co/datasets/{dataset}), which trackiod keeps in sync from the nodes
where the runs train.

Embed it in a page with:

```html
<iframe src="https://{host}.hf.space/?__theme=light" width="100%" height="900" frameborder="0"></iframe>
```
"""

_REQUIREMENTS = "pyarrow>=14\nhuggingface_hub>=0.24\npandas>=2\nnumpy>=1.24\n"


def _check_repo_id(value: str, what: str) -> str:
    parts = value.split("/")
    if len(parts) != 2 or not all(parts) or any(" " in p for p in parts):
        raise UsageError(f"{what} must look like ORG/NAME, not {value!r}")
    return value


def space_host(space: str) -> str:
    """The ``*.hf.space`` host name of a Space (``org/name`` becomes ``org-name``)."""
    return space.replace("/", "-").replace("_", "-").replace(".", "-").lower()


def space_files(space: str, dataset: str) -> dict[str, bytes]:
    """The files of the dashboard Space for ``dataset``, by path in the Space repository.

    Raises:
        UsageError: ``space`` or ``dataset`` is not of the form ORG/NAME.
    """
    _check_repo_id(space, "--space")
    _check_repo_id(dataset, "--dataset")
    readme = _README.format(title=space.split("/")[1][:30], space=space, dataset=dataset, host=space_host(space))
    return {
        "README.md": readme.encode(),
        "app.py": (APP_DIR / "app.py").read_bytes(),
        "trackiod_data.py": (APP_DIR / "trackiod_data.py").read_bytes(),
        "requirements.txt": _REQUIREMENTS.encode(),
        "trackiod_space.json": json.dumps({"dataset": dataset}, indent=1).encode(),
    }


def write_space(space: str, dataset: str, out: Path) -> list[Path]:
    """Write the Space's files into ``out`` (``trackiod deploy --out``: look before publishing)."""
    written = []
    for name, data in space_files(space, dataset).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def deploy_space(hub: Hub, space: str, dataset: str, private: bool) -> str:
    """Create the Space if needed and push the dashboard's files in one commit; returns the commit id.

    Raises:
        UsageError: a malformed Space or dataset id.
        HubAuthError: the token cannot create or write the Space.
        HubTransientError: the Hub could not be reached.
    """
    from huggingface_hub import CommitOperationAdd

    files = space_files(space, dataset)
    hub.ensure_repo(space, "space", private=private, space_sdk="gradio")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
    return hub.commit(space, "space", operations, f"trackiod deploy: dashboard reading {dataset}")
