"""wandb.Video: a video file's bytes, or frames as an array that the daemon encodes (never this process)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from trackio_shim.errors import MediaError
from trackio_shim.media import _FRAME_MARGIN, Media, array_fields, is_ndarray, read_capped
from trackio_shim.media import tensors as T

if TYPE_CHECKING:
    from trackio_shim.media.wire import WireContext

#: The formats the daemon writes from frames (gif with Pillow; mp4 and webm need PyAV in the daemon).
ENCODED_FORMATS = ("gif", "mp4", "webm")
#: The file formats stored as given, by file extension (``ogv`` is Ogg video).
FILE_FORMATS = {"mp4": "mp4", "webm": "webm", "gif": "gif", "ogg": "ogg", "ogv": "ogg", "mov": "mov"}


class Video(Media):
    """A video, as ``wandb.Video``: a path or binary file (mp4, webm, gif, ogg, mov; ``format`` names a file
    object's format), or frames as an array of shape (time, channel, height, width) or (batch, time, channel,
    height, width), channels 1, 3 or 4, uint8 or floats in [0, 1]. Frames are encoded by the daemon to
    ``format`` (gif by default, as wandb; mp4 and webm need PyAV installed where the daemon runs: ``pip install
    av``, or the ``media`` extra). A batch is tiled into a grid, as wandb does."""

    def __init__(
        self,
        data_or_path: Any,
        caption: str | None = None,
        fps: int | None = None,
        format: str | None = None,
    ) -> None:
        self.data = data_or_path
        self.caption = None if caption is None else str(caption)
        self.format = None if format is None else str(format).lower().lstrip(".")
        given: Any = 4 if fps is None else fps
        whole = type(given) is int or (type(given) is float and given.is_integer())
        self.fps = int(given) if whole else 4
        if not whole or not 1 <= self.fps <= 240:
            self._problem = f"Video(fps={fps!r}): fps must be a whole number of frames per second from 1 to 240"

    def payload(self, ctx: WireContext) -> dict[str, Any]:
        if self._problem:
            raise MediaError(self._problem)
        base: dict[str, Any] = {"_type": "video", "fps": self.fps}
        if self.caption is not None:
            base["caption"] = self.caption
        data = self.data
        if isinstance(data, (str, os.PathLike)) or hasattr(data, "read"):
            name = os.fspath(data) if isinstance(data, (str, os.PathLike)) else str(getattr(data, "name", ""))
            fmt = self.format or os.path.splitext(name)[1].lower().lstrip(".")
            if fmt not in FILE_FORMATS:
                raise MediaError(
                    f"Video({name!r}): unknown video format {fmt!r}; give a file ending in "
                    f"{', '.join('.' + f for f in FILE_FORMATS)}, or format= for a file object"
                )
            return {**base, "format": FILE_FORMATS[fmt], "data": read_capped(data, "a video", ctx)}
        fmt = self.format or "gif"
        if fmt not in ENCODED_FORMATS:
            raise MediaError(f"Video(format={fmt!r}): frames are encoded to {', '.join(ENCODED_FORMATS)}")
        if T.is_tensor(data):
            T.check_real(data, "a video")
            data = T.host_dtype_source(data).to("cpu").numpy()
        if not is_ndarray(data):
            raise MediaError(
                f"Video() takes a path, a binary file or an array of frames, not {type(data).__module__}."
                f"{type(data).__qualname__}"
            )
        if data.ndim not in (4, 5) or data.shape[-3] not in (1, 3, 4) or 0 in data.shape:
            raise MediaError(
                f"a video of shape {tuple(data.shape)} is not (time, channel, height, width) or "
                "(batch, time, channel, height, width) with 1, 3 or 4 channels"
            )
        fields = array_fields(data, "a video", ctx.max_frame_bytes - _FRAME_MARGIN, "TRACKIOD_MAX_FRAME_BYTES")
        return {**base, "format": fmt, "raw": True, **fields}
