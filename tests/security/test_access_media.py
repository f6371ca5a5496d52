"""Promise: media stays inside the media folder -- the write side (docs/security.md).

The read side (the dashboard's /media route: ``..`` raw and encoded, links out) is in
tests/dashboard/test_dashboard_access.py. Here keys shaped like paths go through a real shim and daemon as images
and HTML, and every file the daemon wrote is inside ``TRACKIOD_HOME/media``, under a folder named for the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trackiod.ingest.media import slug

PATH_KEYS = [
    "../../../escape",
    "/etc/evil",
    "..",
    ".",
    "a/../../b",
    "..\\..\\windows",
    "%2e%2e/%2e%2e/encoded",
    "~/home",
    "x/" * 40 + "deep",
]


@pytest.mark.parametrize("key", PATH_KEYS)
def test_a_key_becomes_one_safe_folder_name(key: str) -> None:
    name = slug(key)
    assert "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith(".")
    assert len(name) <= 80


def test_media_under_path_shaped_keys_is_written_inside_the_media_folder(
    daemon: Any, shim: Any, tmp_path: Path
) -> None:
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    run = shim.init(project="media")
    for step, key in enumerate(PATH_KEYS):
        run.log({key: shim.Image(pixels), f"{key}.html": shim.Html(f"<p>{step}</p>")}, step=step)
    run.finish()
    media_dir = (daemon.home / "media").resolve()
    stored = shim.Api().run(f"{run.project}/{run.id}")
    for step, key in enumerate(PATH_KEYS):
        (image,) = stored.media(key)
        assert np.array_equal(np.asarray(image.load()), pixels), key
        assert media_dir in image.local_path.resolve().parents, key
        assert stored.media(f"{key}.html")[0].load() == f"<p>{step}</p>"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".png", ".html")]
    assert len(written) == 2 * len(PATH_KEYS)
    assert all(media_dir in p.resolve().parents for p in written), [p for p in written if media_dir not in p.parents]
    assert not Path("/etc/evil").exists()


def test_project_names_and_run_ids_that_would_leave_their_folders_are_refused(daemon: Any, shim: Any) -> None:
    """They name folders (files/<project>/<run id>/ for run.save()): '..' there would lead out of the data dir."""
    for params in ({"project": ".."}, {"project": "."}, {"project": "p", "id": ".."}, {"project": "p", "id": "a\0b"}):
        with pytest.raises(shim.UsageError, match=re.escape("cannot be '.', '..'")):
            shim.init(**params)
    run = shim.init(project="..p", id="..r")  # dots inside a name are fine
    run.finish()
    assert (run.project, run.id) == ("..p", "..r")
