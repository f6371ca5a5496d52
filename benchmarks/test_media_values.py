"""What the training loop pays for videos, audio and lists of images, against what the daemon then does for them.

The shim only copies a video's frames or audio's samples into the frame it sends; the daemon encodes them. Each
figure is a median of single calls measured in the same run, so the ratios hold on a shared machine where the
absolute figures do not. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.support.daemons import DaemonProcess
from trackiod.ingest.encoders import encode_video, encode_wav, video_frames


def _median_us(fn: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


@pytest.mark.benchmark(group="media")
def test_video_and_audio_cost_the_loop_a_fraction_of_their_encoding(
    daemon: DaemonProcess, shim: Any, figures: Any, mode: Any
) -> None:
    test = "rich values: log() against the daemon's encoding"
    calls = 5 if mode.quick else 25
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, 3, 64, 64), dtype=np.uint8)
    samples = (0.3 * np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 440)).astype(np.float32)
    run = shim.init(project="bench-media")
    log_video = _median_us(lambda: run.log({"clip": shim.Video(frames, fps=8)}), calls)
    log_audio = _median_us(lambda: run.log({"tone": shim.Audio(samples, sample_rate=16_000)}), calls)
    tiled = video_frames(frames)
    gif = _median_us(lambda: encode_video(tiled, 8, "gif"), calls)
    webm = _median_us(lambda: encode_video(tiled, 8, "webm"), calls)
    wav = _median_us(lambda: encode_wav(samples, 16_000), calls)
    run.finish()
    figures.add(test, "log(Video 16 frames 64x64 RGB) p50", log_video, "µs", note=f"n={calls}")
    figures.add(test, "daemon: encode them to gif p50", gif, "µs")
    figures.add(test, "daemon: encode them to webm p50", webm, "µs")
    figures.add(test, "log(Video) / daemon gif encode", log_video / gif, "x")
    figures.add(test, "log(Audio 1 s at 16 kHz) p50", log_audio, "µs")
    figures.add(test, "daemon: write it as WAV p50", wav, "µs")
    figures.budget(test, "log(Video) / daemon gif encode, budget", log_video / gif, "x", 0.5)


@pytest.mark.benchmark(group="media")
def test_a_list_of_images_costs_about_as_much_as_the_same_images_under_separate_keys(
    daemon: DaemonProcess, shim: Any, figures: Any, mode: Any
) -> None:
    test = "rich values: a gallery against separate keys"
    calls = 10 if mode.quick else 50
    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(8)]
    run = shim.init(project="bench-media")
    as_list = _median_us(lambda: run.log({"samples": [shim.Image(a) for a in images]}), calls)
    as_keys = _median_us(lambda: run.log({f"samples/{i}": shim.Image(a) for i, a in enumerate(images)}), calls)
    run.finish()
    figures.add(test, "log({'k': [8 Images 64x64]}) p50", as_list, "µs", note=f"n={calls}")
    figures.add(test, "log(8 keys, one Image each) p50", as_keys, "µs")
    figures.budget(test, "list / separate keys", as_list / as_keys, "x", 1.5)
