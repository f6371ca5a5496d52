"""wandb's rich value types, with wandb's constructors: Histogram, Image, Html, plus Array (Table: table.py; Video,
Audio, Object3D, Plotly and the wandb.plot charts in their own modules of this package).

These objects only gather what the caller gave them; nothing heavy happens here. Problems with the content (a
wrong image shape, a table row of the wrong length, an unsupported dtype) are reported when the value is
logged, as a warning that names its key, and only that key is dropped. PNG encoding and file writes happen in
the daemon (trackiod/media.py). numpy, PIL, matplotlib and torch are imported only when the caller passes
their objects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trackio_shim._warn import warn_once
from trackio_shim.errors import MediaError
from trackio_shim.media import tensors as T

if TYPE_CHECKING:
    from trackio_shim.media.wire import Prepared, WireContext

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


def module_of(value: Any) -> str:
    return type(value).__module__


def is_ndarray(value: Any) -> bool:
    return module_of(value) == "numpy" and type(value).__name__ == "ndarray"


def is_pil(value: Any) -> bool:
    return module_of(value).startswith("PIL.") and hasattr(value, "mode") and hasattr(value, "tobytes")


def is_figure(value: Any) -> bool:
    return module_of(value).startswith("matplotlib") and hasattr(value, "canvas") and hasattr(value, "savefig")


def is_pyplot(value: Any) -> bool:
    """``matplotlib.pyplot`` itself, which wandb accepts as "the current figure"."""
    return type(value).__name__ == "module" and getattr(value, "__name__", None) == "matplotlib.pyplot"


def read_capped(source: Any, what: str, ctx: WireContext) -> bytes:
    """The bytes of a file path or an open binary file, refused when they cannot fit in one frame.

    Raises:
        MediaError: the file cannot be read, or is over TRACKIOD_MAX_FRAME_BYTES (less the frame's margin).
    """
    limit = ctx.max_frame_bytes - _FRAME_MARGIN
    if hasattr(source, "read"):
        body = source.read(limit + 1)
        name = getattr(source, "name", "the file object")
    else:
        name = os.fspath(source)
        try:
            if os.path.getsize(name) > limit:
                body = b"x" * (limit + 1)
            else:
                with open(name, "rb") as handle:
                    body = handle.read()
        except OSError as exc:
            raise MediaError(f"cannot read {what} file {name!r}: {exc.strerror or exc}") from None
    if not isinstance(body, bytes):
        raise MediaError(f"{what}: the file object {name!r} must be opened in binary mode")
    if len(body) > limit:
        raise MediaError(
            f"{what} file {name!r} is over TRACKIOD_MAX_FRAME_BYTES ({ctx.max_frame_bytes:,} bytes, less 64 KiB "
            "for the rest of the call); log a smaller file or raise the limit"
        )
    return body


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
        out.media[key] = self.payload(ctx)

    def payload(self, ctx: WireContext) -> dict[str, Any]:
        """The value's wire form, on the host (what one element of a logged list becomes).

        Raises:
            MediaError: the value cannot be sent as given, or cannot be an element of a list (histograms,
                arrays and tables are logged one per key).
        """
        raise MediaError(f"a {type(self).__name__} cannot be an element of a logged list; log it under its own key")


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

    @classmethod
    def from_device_bins(cls, device_bins: Any, num_bins: int) -> Histogram:
        """A tensor's histogram already computed on its device: ``num_bins`` counts, then the finite minimum and
        maximum, as trackio_shim.media.tensors.HistogramBatches gives them (watch()'s batched pass)."""
        histogram = cls.__new__(cls)
        histogram._counts = histogram._edges = None
        histogram._device, histogram.num_bins = device_bins, num_bins
        return histogram

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
    as in torchvision), a matplotlib figure or ``matplotlib.pyplot`` (its current figure), with a caption. Float
    values in [0, 1] are scaled to 0..255. The daemon encodes arrays to PNG and writes the file; a figure is
    drawn here (only this process has it) and sent as its raw pixels."""

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
        if is_pyplot(data_or_path):
            data_or_path = data_or_path.gcf()
        if is_figure(data_or_path):
            # Drawn now, as wandb does: the figure as it is when the Image is made, whatever happens to it later.
            import numpy as np

            data_or_path.canvas.draw()
            data_or_path = np.array(data_or_path.canvas.buffer_rgba())
        self.data = data_or_path
        self.mode = mode
        self.caption = None if caption is None else str(caption)
        self.normalize = normalize
        if boxes is not None or masks is not None or classes is not None:
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
        if is_pil(data):
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
        if is_ndarray(data):
            return self._raw(data, image_layout(data.shape, channels_first=False), self._base(), ctx)
        raise MediaError(
            f"Image() takes a path, a numpy array, a PIL image, a tensor, a matplotlib figure or pyplot, "
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
