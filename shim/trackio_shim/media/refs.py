"""Stored rich values as the read API returns them: dicts, as in wandb's history, that can be opened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from trackio_shim.errors import UsageError


class MediaRef(dict[str, Any]):
    """One stored rich value (histogram, array, image, table, HTML, video, audio, 3-D object, plotly figure,
    chart or gallery): a dict with ``_type``, ``step`` and the kind's fields (``path`` is relative to
    ``TRACKIOD_HOME/media``; a gallery has ``items`` instead, each with its own ``path``), plus :meth:`open` and
    :meth:`load`."""

    def __init__(self, fields: dict[str, Any], media_dir: Path) -> None:
        super().__init__(fields)
        self.media_dir = media_dir

    @property
    def kind(self) -> str:
        return str(self["_type"])

    @property
    def step(self) -> int:
        return int(self["step"])

    @property
    def elements(self) -> list[MediaRef]:
        """A gallery's elements, each a MediaRef of its own kind (one element, itself, for any other kind)."""
        if self.kind != "gallery":
            return [self]
        return [
            MediaRef(
                {**{k: v for k, v in item.items() if k != "kind"}, "_type": item["kind"], "step": self.step},
                self.media_dir,
            )
            for item in self["items"]
        ]

    @property
    def local_path(self) -> Path | None:
        """The value's file; None for values stored inline (histograms, arrays) and for galleries (see items)."""
        path = self.get("path")
        return self.media_dir / path if path else None

    def open(self, mode: str = "rb") -> IO[Any]:
        """Open the value's file.

        Raises:
            UsageError: the value has no file (histograms and arrays are stored inline).
        """
        path = self.local_path
        if path is None:
            raise UsageError(f"a stored {self.kind} has no file; use load()")
        return open(path, mode)

    def load(self) -> Any:
        """The value as an object: a numpy array (array), a Histogram, a PIL image, a Table (a table, or a
        chart's table), the HTML str, a plotly figure as a dict, the list of a gallery's elements loaded, or the
        file's bytes (video, audio, 3-D object).

        Raises:
            UsageError: loading an image needs pillow, which is not installed.
        """
        kind = self.kind
        if kind == "array":
            import numpy as np

            dtype = np.dtype(self["dtype"]).newbyteorder("<")
            return np.frombuffer(self["data"], dtype).reshape(self["shape"])
        if kind == "histogram":
            from trackio_shim.media import Histogram

            return Histogram(np_histogram=(self["values"], self["bins"]))
        if kind == "image":
            try:
                from PIL import Image
            except ImportError:
                raise UsageError("loading a stored image needs pillow: pip install pillow") from None
            with self.open() as handle:
                image = Image.open(handle)
                image.load()
                return image
        if kind == "gallery":
            return [item.load() for item in self.elements]
        if kind in ("video", "audio", "object3d"):
            with self.open() as handle:
                return handle.read()
        if kind == "plotly":
            with self.open() as handle:
                return json.load(handle)
        if kind in ("table", "plot"):
            from trackio_shim.media.table import Table

            with self.open() as handle:
                body = json.load(handle)
            cells = [[self._cell(c) for c in row] for row in body["data"]]
            return Table(columns=body["columns"], data=cells)
        if kind == "html":
            with self.open() as handle:
                return handle.read().decode("utf-8")
        raise UsageError(f"cannot load a stored value of type {kind!r}")

    def _cell(self, cell: Any) -> Any:
        kind = cell.get("_type") if isinstance(cell, dict) else None
        if isinstance(kind, str) and kind.endswith("-file"):  # image-file, video-file, audio-file, object3d-file
            return MediaRef({**cell, "_type": kind[: -len("-file")], "step": self.step}, self.media_dir)
        return cell

    def __repr__(self) -> str:
        shown = {k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in self.items()}
        return f"MediaRef({shown!r})"


def wrap_row(row: dict[str, Any], media_dir: Path) -> dict[str, Any]:
    """A history row with its rich values (dicts with ``_type``) as :class:`MediaRef`."""
    for key, value in row.items():
        if type(value) is dict and "_type" in value:
            row[key] = MediaRef(value, media_dir)
    return row
