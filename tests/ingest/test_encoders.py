"""The daemon's encoders of logged frames and samples: tiling a batch of clips, pixel scaling, WAV scaling."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from trackio_shim.errors import FrameRejected
from trackiod.ingest.encoders import encode_video, encode_wav, to_uint8, video_frames


def test_a_batch_of_clips_is_tiled_row_by_row_on_a_square_grid_with_blank_tiles():
    clips = np.zeros((3, 2, 1, 2, 3), np.uint8)  # 3 clips, 2 frames, gray, 2x3 pixels
    for n in range(3):
        clips[n] = 10 * (n + 1)
    frames = video_frames(clips)
    assert frames.shape == (2, 4, 6, 3)  # a 2x2 grid of 2x3 tiles, gray made RGB
    assert frames[0, 0, 0, 0] == 10 and frames[0, 0, 3, 0] == 20 and frames[0, 2, 0, 0] == 30
    assert frames[0, 2, 3, 0] == 0  # the fourth tile is blank


def test_frames_must_be_time_channel_height_width():
    with pytest.raises(FrameRejected, match=r"is not \(T, C, H, W\)"):
        video_frames(np.zeros((2, 5, 4, 4), np.uint8))


def test_pixels_scale_unit_floats_and_clip_the_rest():
    assert to_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    assert to_uint8(np.array([0.0, 0.5, 1.0]), normalize=False).tolist() == [0, 0, 1]
    assert to_uint8(np.array([-5, 300], np.int32)).tolist() == [0, 255]
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]


def test_gif_has_every_frame_and_an_unknown_format_is_refused():
    from PIL import Image

    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1, 0], frames[2, 1] = 255, 255  # distinct frames: Pillow merges repeated ones into a longer frame
    assert Image.open(io.BytesIO(encode_video(frames, 4, "gif"))).n_frames == 3
    with pytest.raises(FrameRejected, match="gif, mp4 or webm"):
        encode_video(frames, 4, "avi")


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.array([0.0, 1.0, -1.0, 2.0]), [0, 32767, -32767, 32767]),
        (np.array([0, 32767, -32768], np.int16), [0, 32767, -32768]),
        (np.array([0, 255], np.uint8), [-32767, 32511]),
    ],
)
def test_wav_holds_16_bit_samples_scaled_from_each_dtype(samples, expected):
    data, channels = encode_wav(samples, 8000)
    with wave.open(io.BytesIO(data)) as handle:
        assert (handle.getsampwidth(), handle.getframerate(), channels) == (2, 8000, 1)
        assert np.frombuffer(handle.readframes(4), "<i2").tolist() == expected
