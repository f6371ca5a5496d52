"""Encoding logged frames and samples into files, in the daemon (the training process only sends the arrays).

Pixels become uint8 by one rule (images and video frames alike); video frames become an animated GIF with
Pillow, or mp4 (H.264) and webm (VP8) with PyAV, an optional package: without it those two formats are refused
with the command that installs it. Samples become 16-bit PCM WAV with the standard library's ``wave``.
"""

from __future__ import annotations

import io
import math
import wave
from typing import Any

import numpy as np

from trackio_shim.errors import FrameRejected

#: Frames of one video at most, and pixels of one frame (after tiling a batch).
MAX_FRAMES = 10_000
MAX_FRAME_PIXELS = 1 << 24
#: The codec, pixel format and options PyAV writes each container with: the fastest settings of each encoder,
#: because encoding runs in the daemon's writer thread (logged videos are small previews, not archives).
_AV_CODECS = {
    "mp4": ("libx264", "yuv420p", {"preset": "ultrafast"}),
    "webm": ("libvpx", "yuv420p", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
}


def to_uint8(array: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Pixel values as uint8: bools as 0/255, floats within [0, 1] scaled by 255 (as wandb) when ``normalize``,
    anything else clipped to 0..255."""
    if array.dtype == np.bool_:
        return np.ascontiguousarray(array.astype(np.uint8) * 255)
    if array.dtype.kind == "f":
        values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if normalize and values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        return np.ascontiguousarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if array.dtype != np.uint8:
        return np.ascontiguousarray(np.clip(array, 0, 255).astype(np.uint8))
    return np.ascontiguousarray(array)


def video_frames(array: np.ndarray) -> np.ndarray:
    """(time, channel, height, width) or (batch, time, channel, height, width) as (time, height, width, 3|4)
    uint8; a batch is tiled into a grid of ceil(sqrt(batch)) columns, as wandb does.

    Raises:
        FrameRejected: the shape is neither, or the video is empty or too large.
    """
    if array.ndim == 4:
        array = array[None]
    if array.ndim != 5 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise FrameRejected(f"a video of shape {list(array.shape)} is not (T, C, H, W) or (N, T, C, H, W)")
    batch, time, channels, height, width = array.shape
    cols = math.ceil(math.sqrt(batch))
    rows = math.ceil(batch / cols)
    if time > MAX_FRAMES or rows * height * cols * width > MAX_FRAME_PIXELS:
        raise FrameRejected(f"a video of {time} frames of {rows * height}x{cols * width} pixels is too large")
    if batch < rows * cols:  # blank tiles fill the grid's last row
        array = np.concatenate([array, np.zeros((rows * cols - batch, *array.shape[1:]), array.dtype)])
    grid = array.reshape(rows, cols, time, channels, height, width).transpose(2, 0, 4, 1, 5, 3)
    frames = to_uint8(grid.reshape(time, rows * height, cols * width, channels))
    if channels == 1:
        frames = np.repeat(frames, 3, axis=3)
    return frames


def encode_video(frames: np.ndarray, fps: int, fmt: str) -> bytes:
    """``frames`` (time, height, width, 3|4 uint8) as a ``fmt`` file (gif, mp4 or webm).

    Raises:
        FrameRejected: the format is unknown, or needs PyAV and PyAV is not installed where the daemon runs.
    """
    if fmt == "gif":
        from PIL import Image as PILImage

        # Fast octree quantisation: Pillow's default (median cut) took 20x longer here, in the writer thread.
        images = [PILImage.fromarray(f[:, :, :3]).quantize(256, PILImage.Quantize.FASTOCTREE) for f in frames]
        out = io.BytesIO()
        images[0].save(
            out, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0
        )
        return out.getvalue()
    if fmt not in _AV_CODECS:
        raise FrameRejected(f"frames are encoded to gif, mp4 or webm, not {fmt!r}")
    try:
        import av
    except ImportError:
        raise FrameRejected(
            f"encoding a video to {fmt} needs PyAV where the daemon runs: pip install av (or trackiod[media]), "
            "then restart the daemon; or log it with format='gif', which needs nothing more"
        ) from None
    codec, pix_fmt, options = _AV_CODECS[fmt]
    # yuv420p needs even sides: pad the frames' right and bottom edges with black.
    height, width = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
    if (height, width) != frames.shape[1:3]:
        padded = np.zeros((frames.shape[0], height, width, frames.shape[3]), np.uint8)
        padded[:, : frames.shape[1], : frames.shape[2]] = frames
        frames = padded
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream: Any = container.add_stream(codec, rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = dict(options)
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:, :, :3]), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def encode_wav(samples: np.ndarray, sample_rate: int) -> tuple[bytes, int]:
    """Samples of shape (n,) or (n, channels) as 16-bit PCM WAV; returns (file bytes, channels). Floats are
    taken as [-1, 1] and clipped; integers other than int16 are scaled from their own range.

    Raises:
        FrameRejected: the shape is not (n,) or (n, 1..8), or there are no samples.
    """
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0 or not 1 <= samples.shape[1] <= 8:
        raise FrameRejected(f"audio of shape {list(samples.shape)} is not (samples,) or (samples, 1..8 channels)")
    if samples.dtype.kind == "f":
        values = np.nan_to_num(samples.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
        pcm = np.clip(np.rint(values * 32767.0), -32768, 32767).astype("<i2")
    elif samples.dtype == np.bool_:
        pcm = samples.astype("<i2") * 32767
    elif samples.dtype.itemsize == 2 and samples.dtype.kind == "i":
        pcm = samples.astype("<i2")
    else:
        info = np.iinfo(samples.dtype)
        centre = (int(info.max) + int(info.min) + 1) / 2
        scaled = (samples.astype(np.float64) - centre) / ((int(info.max) - int(info.min) + 1) / 2)
        pcm = np.clip(np.rint(scaled * 32767.0), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(int(samples.shape[1]))
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(np.ascontiguousarray(pcm).tobytes())
    return out.getvalue(), int(samples.shape[1])
