"""wandb.Audio: an audio file's bytes, or samples as an array that the daemon writes as WAV (never this process)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from trackio_shim.errors import MediaError
from trackio_shim.media import _FRAME_MARGIN, Media, array_fields, is_ndarray, read_capped
from trackio_shim.media import tensors as T

if TYPE_CHECKING:
    from trackio_shim.media.wire import WireContext

#: The file formats stored as given, by file extension.
FILE_FORMATS = {"wav": "wav", "mp3": "mp3", "ogg": "ogg", "oga": "ogg", "flac": "flac", "m4a": "m4a"}


class Audio(Media):
    """Audio, as ``wandb.Audio``: a path or binary file (wav, mp3, ogg, flac, m4a), or samples as an array of
    shape (samples,) or (samples, channels) with ``sample_rate``: floats in [-1, 1] or int16. The daemon
    writes samples as 16-bit WAV with the standard library, so no package is needed."""

    def __init__(self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None) -> None:
        self.data = data_or_path
        self.sample_rate = sample_rate
        self.caption = None if caption is None else str(caption)

    def payload(self, ctx: WireContext) -> dict[str, Any]:
        base: dict[str, Any] = {"_type": "audio"}
        if self.caption is not None:
            base["caption"] = self.caption
        data = self.data
        if isinstance(data, (str, os.PathLike)) or hasattr(data, "read"):
            name = os.fspath(data) if isinstance(data, (str, os.PathLike)) else str(getattr(data, "name", ""))
            fmt = os.path.splitext(name)[1].lower().lstrip(".")
            if fmt not in FILE_FORMATS:
                raise MediaError(
                    f"Audio({name!r}): unknown audio format {fmt!r}; give a file ending in "
                    f"{', '.join('.' + f for f in FILE_FORMATS)}"
                )
            return {**base, "format": FILE_FORMATS[fmt], "data": read_capped(data, "an audio", ctx)}
        rate = self.sample_rate
        if type(rate) is not int or not 1 <= rate <= 768_000:
            raise MediaError(f"Audio(sample_rate={rate!r}): samples need sample_rate, a whole number of Hz")
        if T.is_tensor(data):
            T.check_real(data, "audio")
            data = T.host_dtype_source(data).to("cpu").numpy()
        if not is_ndarray(data):
            import numpy as np

            try:
                data = np.asarray(data, dtype=np.float64)
            except (TypeError, ValueError):
                raise MediaError(
                    f"Audio() takes a path, a binary file or an array of samples, not {type(data).__qualname__}"
                ) from None
        if data.ndim not in (1, 2) or data.size == 0 or (data.ndim == 2 and not 1 <= data.shape[1] <= 8):
            raise MediaError(
                f"audio of shape {tuple(data.shape)} is not (samples,) or (samples, channels) with 1 to 8 channels"
            )
        fields = array_fields(data, "audio", ctx.max_frame_bytes - _FRAME_MARGIN, "TRACKIOD_MAX_FRAME_BYTES")
        return {**base, "format": "wav", "raw": True, "sample_rate": rate, **fields}
