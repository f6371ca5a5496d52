"""wandb's rich value types, with wandb's constructors: Histogram, Image, Table, Html, plus Array.

These objects only gather what the caller gave them; nothing heavy happens here. Problems with the content (a
wrong image shape, a table row of the wrong length, an unsupported dtype) are reported when the value is
logged, as a warning that names its key, and only that key is dropped. PNG encoding and file writes happen in
the daemon (trackiod/media.py). numpy, PIL, matplotlib and torch are imported only when the caller passes
their objects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import tensors as T
from .errors import MediaError, UsageError

#: Largest number of histogram bins (as wandb).
MAX_BINS = 512
#: Room for the frame's header and the rest of a call's keys when checking a value against the frame limit.
_FRAME_MARGIN = 64 * 1024
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


@dataclass
class WireContext:
    """Limits and the copy mode one log() call works with."""

    copy: str
    max_frame_bytes: int
    max_array_bytes: int


@dataclass
class Prepared:
    """A log() call split for the wire: values sent now, rich payloads sent now, device values staged."""

    scalars: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] = field(default_factory=dict)
    staged: list[T.Staged] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, key: str, staged: T.Staged, ctx: WireContext) -> None:
        """Queue a device value, or resolve it at once when the call asked for ``copy="sync"``."""
        if ctx.copy == "sync":
            is_media, value = T.sync_now(staged)
            (self.media if is_media else self.scalars)[key] = value
        else:
            self.staged.append(staged)


def module_of(value: Any) -> str:
    return type(value).__module__


def _is_ndarray(value: Any) -> bool:
    return module_of(value) == "numpy" and type(value).__name__ == "ndarray"


def _is_pil(value: Any) -> bool:
    return module_of(value).startswith("PIL.") and hasattr(value, "mode") and hasattr(value, "tobytes")


def _is_figure(value: Any) -> bool:
    return module_of(value).startswith("matplotlib") and hasattr(value, "canvas") and hasattr(value, "savefig")


def array_fields(array: Any, what: str, limit: int, limit_name: str) -> dict[str, Any]:
    """``{dtype, shape, data}`` of a numpy array (C order, little-endian), checked against ``limit`` bytes."""
    import numpy as np

    if array.dtype.kind not in "biuf":
        raise MediaError(f"{what} of dtype {array.dtype} is not supported; use bool, int, uint or float values")
    if array.nbytes > limit:
        raise MediaError(
            f"{what} of {array.nbytes:,} bytes is over {limit_name} ({limit:,} bytes); "
            "log a slice, a downsampled copy or a Histogram instead"
        )
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.tobytes()}


class Media:
    """Base of the values log() sends as MEDIA rather than as numbers."""

    _problem: str | None = None

    def _wire(self, key: str, ctx: WireContext, out: Prepared) -> None:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------ Histogram


class Histogram(Media):
    """A histogram, as ``wandb.Histogram``: of a sequence, a numpy array or a tensor, or given as
    ``np_histogram=(counts, edges)``. A tensor's histogram is computed on its own device; only the bins are
    copied to the host, deferred like a scalar."""

    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64) -> None:
        self._counts: list[int] | None = None
        self._edges: list[float] | None = None
        self._device: Any = None
        self.num_bins = num_bins
        if type(num_bins) is not int or not 1 <= num_bins <= MAX_BINS:
            self._problem = f"num_bins must be an int from 1 to {MAX_BINS}, not {num_bins!r}"
        elif np_histogram is not None:
            self._from_np_histogram(np_histogram)
        elif sequence is None:
            self._problem = "Histogram() needs a sequence, an array, a tensor or np_histogram=(counts, edges)"
        elif T.is_tensor(sequence):
            try:
                self._device = T.histogram_on_device(sequence, num_bins)
            except MediaError as exc:
                self._problem = str(exc)
        else:
            self._from_values(sequence)

    def _from_np_histogram(self, np_histogram: Any) -> None:
        try:
            counts, edges = np_histogram
            counts, edges = [float(c) for c in counts], [float(e) for e in edges]
        except (TypeError, ValueError):
            self._problem = "np_histogram must be a pair (counts, edges) of number sequences"
            return
        if len(edges) != len(counts) + 1 or not counts:
            self._problem = f"np_histogram has {len(counts)} counts and {len(edges)} edges; edges must be counts + 1"
        elif len(counts) > MAX_BINS:
            self._problem = f"np_histogram has {len(counts)} bins; at most {MAX_BINS} are stored"
        else:
            self._counts = [int(c) if c.is_integer() else c for c in counts]
            self._edges = edges

    def _from_values(self, sequence: Any) -> None:
        import numpy as np

        values = np.asarray(sequence)
        if values.dtype.kind not in "biuf":
            self._problem = f"a histogram of dtype {values.dtype} is not supported; pass numbers"
            return
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.astype(np.float64)
        if finite.size == 0:
            self._problem = "a histogram needs at least one finite value"
            return
        counts, edges = np.histogram(finite.reshape(-1), bins=self.num_bins)
        self._counts, self._edges = counts.tolist(), edges.tolist()

    @property
    def histogram(self) -> list[int] | None:
        """The counts (as wandb); for a tensor this waits for its device (a sync)."""
        self._resolve()
        return self._counts

    @property
    def bins(self) -> list[float] | None:
        """The bin edges, one more than the counts (as wandb); for a tensor this waits for its device."""
        self._resolve()
        return self._edges

    def _resolve(self) -> None:
        if self._device is not None and self._counts is None:
            payload = T.histogram_payload(self._device.to("cpu").tolist(), self.num_bins)
            self._counts, self._edges = payload["values"], payload["bins"]

    def _wire(self, key: str, ctx: WireContext, out: Prepared) -> None:
        if self._problem:
            raise MediaError(self._problem)
        if self._device is not None and self._counts is None:
            out.add(key, T.stage_histogram(key, self._device, self.num_bins), ctx)
        else:
            out.media[key] = {"_type": "histogram", "values": self._counts, "bins": self._edges}


# ------------------------------------------------------------------------------------------------ Array


class Array(Media):
    """A whole array (numpy array, tensor or nested sequence of numbers) stored as it is: dtype, shape and
    data, for later analysis. At most ``TRACKIOD_MAX_ARRAY_BYTES`` (4 MiB by default); bfloat16 and float8
    tensors are stored as float32."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def _wire(self, key: str, ctx: WireContext, out: Prepared) -> None:
        data = self.data
        if T.is_tensor(data):
            T.check_real(data, "an array")
            size = int(data.numel()) * max(int(data.element_size()), 4 if T.dtype_name(data) == "bfloat16" else 1)
            if size > ctx.max_array_bytes:
                raise MediaError(
                    f"an array of {size:,} bytes is over TRACKIOD_MAX_ARRAY_BYTES ({ctx.max_array_bytes:,} bytes); "
                    "log a slice, a downsampled copy or a Histogram instead"
                )
            limit = ctx.max_array_bytes

            def finish(host: Any) -> tuple[bool, Any]:
                fields = array_fields(host.numpy(), "an array", limit, "TRACKIOD_MAX_ARRAY_BYTES")
                return True, {"_type": "array", **fields}

            out.add(key, T.stage_whole(key, data, finish), ctx)
            return
        import numpy as np

        try:
            array = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise MediaError(f"cannot make an array of this value ({exc})") from None
        fields = array_fields(array, "an array", ctx.max_array_bytes, "TRACKIOD_MAX_ARRAY_BYTES")
        out.media[key] = {"_type": "array", **fields}


# ------------------------------------------------------------------------------------------------ Image


def image_layout(shape: Sequence[int], channels_first: bool) -> str:
    """``HW``, ``HWC`` or ``CHW`` for an image array's shape.

    Raises:
        MediaError: the shape is none of those, with 1, 3 or 4 channels.
    """
    dims = tuple(int(d) for d in shape)
    if all(d > 0 for d in dims):
        if len(dims) == 2:
            return "HW"
        if len(dims) == 3:
            first, last = dims[0] in (1, 3, 4), dims[2] in (1, 3, 4)
            if first and (channels_first or not last):
                return "CHW"
            if last:
                return "HWC"
    raise MediaError(f"an image of shape {dims} is not HxW, HxWxC or CxHxW with 1, 3 or 4 channels")


class Image(Media):
    """An image, as ``wandb.Image``: from a file path, an HWC or CHW numpy array, a PIL image, a tensor (CHW,
    as in torchvision) or a matplotlib figure, with a caption. Float values in [0, 1] are scaled to 0..255.
    The daemon encodes arrays to PNG and writes the file."""

    def __init__(
        self,
        data_or_path: Any,
        mode: str | None = None,
        caption: str | None = None,
        grouping: int | None = None,
        classes: Any = None,
        boxes: Any = None,
        masks: Any = None,
        file_type: str | None = None,
        normalize: bool = True,
    ) -> None:
        self.data = data_or_path
        self.mode = mode
        self.caption = None if caption is None else str(caption)
        self.normalize = normalize
        if boxes is not None or masks is not None or classes is not None:
            from .values import warn_once

            warn_once("image-overlays", "trackio_shim.Image: boxes, masks and classes are not stored (yet)")

    def _base(self) -> dict[str, Any]:
        base: dict[str, Any] = {"_type": "image"}
        if self.caption is not None:
            base["caption"] = self.caption
        if self.mode is not None:
            base["mode"] = str(self.mode)
        if not self.normalize:
            base["normalize"] = False
        return base

    def _wire(self, key: str, ctx: WireContext, out: Prepared) -> None:
        data = self.data
        if T.is_tensor(data):
            T.check_real(data, "an image")
            layout = image_layout(tuple(data.shape), channels_first=True)
            self._check_size(int(data.numel()) * int(data.element_size()), ctx)
            base = self._base()

            def finish(host: Any) -> tuple[bool, Any]:
                return True, self._raw(host.numpy(), layout, base, ctx)

            out.add(key, T.stage_whole(key, data, finish), ctx)
            return
        out.media[key] = self.payload(ctx)

    def payload(self, ctx: WireContext) -> dict[str, Any]:
        """The wire form of an image that is already on the host (tensors are copied synchronously)."""
        data = self.data
        if isinstance(data, (str, os.PathLike)):
            return self._file(os.fspath(data), ctx)
        if _is_figure(data):
            data.canvas.draw()
            import numpy as np

            return self._raw(np.asarray(data.canvas.buffer_rgba()), "HWC", self._base(), ctx)
        if _is_pil(data):
            image = data if data.mode in ("L", "RGB", "RGBA") else data.convert("RGBA")
            width, height = image.size
            channels = len(image.mode)
            shape = [height, width] if channels == 1 else [height, width, channels]
            body = image.tobytes()
            self._check_size(len(body), ctx)
            return {**self._base(), "format": "raw", "dtype": "uint8", "shape": shape, "layout": "HWC", "data": body}
        if T.is_tensor(data):
            T.check_real(data, "an image")
            layout = image_layout(tuple(data.shape), channels_first=True)
            return self._raw(T.host_dtype_source(data).to("cpu").numpy(), layout, self._base(), ctx)
        if _is_ndarray(data):
            return self._raw(data, image_layout(data.shape, channels_first=False), self._base(), ctx)
        raise MediaError(
            f"Image() takes a path, a numpy array, a PIL image, a tensor or a matplotlib figure, "
            f"not {module_of(data)}.{type(data).__qualname__}"
        )

    def _check_size(self, size: int, ctx: WireContext) -> None:
        if size > ctx.max_frame_bytes - _FRAME_MARGIN:
            raise MediaError(
                f"an image of {size:,} bytes is over TRACKIOD_MAX_FRAME_BYTES ({ctx.max_frame_bytes:,} bytes, "
                "less 64 KiB for the rest of the call); downscale it or log it as a PNG/JPEG file"
            )

    def _raw(self, array: Any, layout: str, base: dict[str, Any], ctx: WireContext) -> dict[str, Any]:
        image_layout(array.shape, channels_first=layout == "CHW")
        fields = array_fields(array, "an image", ctx.max_frame_bytes - _FRAME_MARGIN, "TRACKIOD_MAX_FRAME_BYTES")
        return {**base, "format": "raw", "layout": layout, **fields}

    def _file(self, path: str, ctx: WireContext) -> dict[str, Any]:
        try:
            size = os.path.getsize(path)
            self._check_size(size, ctx)
            with open(path, "rb") as handle:
                body = handle.read()
        except OSError as exc:
            raise MediaError(f"cannot read image file {path!r}: {exc.strerror or exc}") from None
        kind = next((name for magic, name in _IMAGE_MAGIC if body.startswith(magic)), None)
        if kind is None and body[:4] == b"RIFF" and body[8:12] == b"WEBP":
            kind = "webp"
        if kind is None:
            raise MediaError(f"{path!r} is not a PNG, JPEG, GIF, WEBP or BMP file")
        return {**self._base(), "format": kind, "data": body}


# ------------------------------------------------------------------------------------------------ Html


class Html(Media):
    """HTML, as ``wandb.Html``: a string of HTML, a path to an .html file, or an open file."""

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        self._problem = None
        if hasattr(data, "read"):
            data = data.read()
        elif isinstance(data, (str, os.PathLike)) and not data_is_not_path and os.fspath(data).endswith(".html"):
            try:
                with open(os.fspath(data), encoding="utf-8") as handle:
                    data = handle.read()
            except OSError as exc:
                self._problem = f"cannot read HTML file {os.fspath(data)!r}: {exc.strerror or exc}"
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        if not isinstance(data, str) and self._problem is None:
            self._problem = f"Html() takes a str, a path or a file, not {type(data).__name__}"
        self.html = data if isinstance(data, str) else ""
        self.inject = inject

    def _wire(self, key: str, ctx: WireContext, out: Prepared) -> None:
        if self._problem:
            raise MediaError(self._problem)
        size = len(self.html.encode("utf-8", errors="replace"))
        if size > ctx.max_frame_bytes - _FRAME_MARGIN:
            raise MediaError(f"HTML of {size:,} bytes is over TRACKIOD_MAX_FRAME_BYTES ({ctx.max_frame_bytes:,})")
        out.media[key] = {"_type": "html", "html": self.html}


# ------------------------------------------------------------------------------------------------ Table


def _cell(value: Any, ctx: WireContext) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Image):
        return value.payload(ctx)
    if module_of(value) == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    if T.is_tensor(value) and value.numel() == 1:
        return value.item()
    from .run import json_friendly

    return json_friendly(value)


class Table(Media):
    """A table, as ``wandb.Table``: ``columns`` and ``data`` (rows), or a pandas ``dataframe``. Cells hold
    numbers, strings, None, or Images (stored as files by the daemon); other values are stored as JSON or
    their str()."""

    def __init__(
        self,
        columns: Sequence[Any] | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        dataframe: Any = None,
        dtype: Any = None,
        optional: Any = True,
        allow_mixed_types: bool = False,
        log_mode: str | None = None,
    ) -> None:
        self._problem = None
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        data = data if data is not None else rows
        self.data: list[list[Any]] = [list(row) for row in data] if data is not None else []
        if columns is None:
            width = len(self.data[0]) if self.data else 3
            columns = ["Input", "Output", "Expected"] if width == 3 else [f"col{i}" for i in range(width)]
        self.columns: list[str] = [str(c) for c in columns]
        for i, row in enumerate(self.data):
            if len(row) != len(self.columns):
                self._problem = (
                    f"row {i} has {len(row)} values but the table has {len(self.columns)} columns {self.columns}"
                )
                break
        if len(set(self.columns)) != len(self.columns):
            self._problem = f"column names must be unique: {self.columns}"

    def add_data(self, *data: Any) -> None:
        """Append one row, one value per column.

        Raises:
            ValueError: the row does not have one value per column.
        """
        if len(data) != len(self.columns):
            raise ValueError(f"this table has {len(self.columns)} columns {self.columns}; got {len(data)} values")
        self.data.append(list(data))

    def add_column(self, name: str, data: Sequence[Any], optional: bool = False) -> None:
        """Append a column of values, one per existing row (or the first column of an empty table).

        Raises:
            ValueError: the name is taken, or the length does not match the rows.
        """
        name = str(name)
        if name in self.columns:
            raise ValueError(f"column {name!r} already exists")
        values = list(data)
        if self.columns and len(values) != len(self.data):
            raise ValueError(f"column {name!r} has {len(values)} values; the table has {len(self.data)} rows")
        if not self.columns:
            self.data = [[v] for v in values]
        else:
            for row, value in zip(self.data, values):
                row.append(value)
        self.columns.append(name)

    def get_column(self, name: str, convert_to: str | None = None) -> Any:
        """The values of one column, as a list (or a numpy array with ``convert_to="numpy"``).

        Raises:
            ValueError: there is no such column.
        """
        if name not in self.columns:
            raise ValueError(f"no column {name!r}; the columns are {self.columns}")
        index = self.columns.index(name)
        values = [row[index] for row in self.data]
        if convert_to == "numpy":
            import numpy as np

            return np.array(values)
        return values

    def get_index(self) -> list[int]:
        return list(range(len(self.data)))

    def get_dataframe(self) -> Any:
        """The table as a pandas DataFrame.

        Raises:
            UsageError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("Table.get_dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.data, columns=self.columns)

    def _wire(self, key: str, ctx: WireContext, out: Prepared) -> None:
        if self._problem:
            raise MediaError(self._problem)
        rows = [[_cell(value, ctx) for value in row] for row in self.data]
        out.media[key] = {"_type": "table", "columns": list(self.columns), "data": rows}

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<Table {len(self.data)} rows x {len(self.columns)} columns>"


# ------------------------------------------------------------------------------------------------ log() data


def _auto(value: Any) -> Media | None:
    """The Media a bare value stands for, as wandb converts them: arrays and tensors of more than 32 values
    become Histograms, smaller ones Arrays; figures and PIL images become Images."""
    if _is_ndarray(value) or T.is_tensor(value):
        size = int(value.size if _is_ndarray(value) else value.numel())
        return Histogram(value) if size > 32 else Array(value)
    if _is_figure(value) or _is_pil(value):
        return Image(value)
    return None


def prepare(data: dict[Any, Any], ctx: WireContext) -> tuple[dict[Any, Any], Prepared]:
    """Split one log() call: the plain values (nested as given) and everything rich, keyed by flat name."""
    out = Prepared()
    plain = _walk(data, "", ctx, out)
    return plain, out


def _walk(data: dict[Any, Any], prefix: str, ctx: WireContext, out: Prepared) -> dict[Any, Any]:
    plain: dict[Any, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            inner = _walk(value, f"{name}/", ctx, out)
            if inner or not value:
                plain[key] = inner
            continue
        try:
            if T.is_tensor(value) and value.numel() == 1:
                if ctx.copy == "sync":
                    T.check_real(value, "a tensor")
                    plain[key] = value.item()
                else:
                    out.staged.append(T.stage_scalar(name, value))
                continue
            if _is_ndarray(value) and value.size == 1 and value.dtype.kind in "biuf":
                plain[key] = value.reshape(()).item()
                continue
            rich = value if isinstance(value, Media) else _auto(value)
            if rich is None:
                plain[key] = value
            else:
                rich._wire(name, ctx, out)
        except MediaError as exc:
            out.problems.append((name, str(exc)))
        except Exception as exc:  # a value we could not even inspect must not cost the rest of the call
            out.problems.append((name, f"{type(exc).__name__}: {exc}"))
    return plain
