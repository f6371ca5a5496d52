"""trackio_shim.event_files: TFRecord framing read incrementally, and events decoded to trackiod's wire shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.event_writing import scalar, summary_event, tensor_value, write_records
from trackio_shim import event_files
from trackio_shim.errors import UsageError

pytest.importorskip("tensorboard")


def test_a_record_being_written_is_read_when_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    write_records(path, [summary_event(0, 1.0, [scalar("a", 1.0)]), summary_event(1, 2.0, [scalar("a", 2.0)])])
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # the second record cut short, as a writer mid-write leaves it
    records, offset = event_files.read_records(path, 0)
    assert len(records) == 1
    assert event_files.read_records(path, offset) == ([], offset)
    path.write_bytes(whole)
    records, end = event_files.read_records(path, offset)
    assert len(records) == 1 and end == len(whole)
    decoder = event_files.EventDecoder("train/")
    decoded = decoder.decode(records[0])
    assert decoded is not None and (decoded.step, decoded.wall_time, decoded.scalars) == (1, 2.0, {"train/a": 2.0})


def test_a_damaged_length_is_an_error_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    write_records(path, [summary_event(0, 1.0, [scalar("a", 1.0)])])
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x01" * 16)
    with pytest.raises(UsageError, match=f"record at byte {size} is damaged"):
        event_files.read_records(path, 0)


def test_plugins_are_remembered_per_tag_and_unknown_ones_are_reported() -> None:
    """TensorBoard writes a tag's plugin with its first value only; later values are decoded the same way."""
    decoder = event_files.EventDecoder()
    text = tensor_value("note/text_summary", np.array([b"hello"], dtype=object), "text")
    first = decoder.decode(summary_event(0, 1.0, [text]))
    later = decoder.decode(summary_event(1, 2.0, [tensor_value("note/text_summary", np.array([b"bye"], object), None)]))
    assert first is not None and first.scalars == {"note": "hello"}
    assert later is not None and later.scalars == {"note": "bye"}
    assert decoder.decode(summary_event(2, 3.0, [tensor_value("curve", np.zeros((2, 3)), "pr_curves")])) is None
    assert event_files.describe_skipped(decoder.skipped) == [
        "skipped 1 value(s) of curve: pr_curves summaries are not stored"
    ]


def test_tf2_histograms_and_images_plugins() -> None:
    decoder = event_files.EventDecoder()
    buckets = np.array([[0.0, 1.0, 0.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 0.0]])
    png = b"\x89PNG\r\n\x1a\n" + b"rest"
    images = tensor_value("im", np.array([b"2", b"2", png, png], dtype=object), "images")
    decoded = decoder.decode(summary_event(5, 1.0, [tensor_value("h", buckets, "histograms"), images]))
    assert decoded is not None
    # Empty outer buckets are trimmed.
    assert decoded.media["h"] == {"_type": "histogram", "values": [3, 4], "bins": [1.0, 2.0, 3.0]}
    assert decoded.media["im"] == {"_type": "image", "format": "png", "data": png}
    assert decoded.media["im/1"]["format"] == "png"


def test_fine_histograms_are_merged_to_the_daemon_limit() -> None:
    edges = np.linspace(0, 1, 2001)
    buckets = np.stack([edges[:-1], edges[1:], np.ones(2000)], axis=1)
    decoded = event_files.EventDecoder().decode(summary_event(0, 1.0, [tensor_value("h", buckets, "histograms")]))
    assert decoded is not None
    hist = decoded.media["h"]
    assert len(hist["values"]) <= event_files.MAX_BINS and sum(hist["values"]) == 2000
    assert len(hist["bins"]) == len(hist["values"]) + 1 and hist["bins"][0] == 0.0 and hist["bins"][-1] == 1.0
