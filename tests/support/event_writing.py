"""Writing TensorBoard event files record by record, with TensorBoard's own protobufs and record writer.

For tests that need exact control over what a file holds (a tag's plugin on its first value only, TF2
histogram tensors, hparams, a record cut in half); tests of what real SummaryWriters write use them directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summary_event(step: int, wall: float, values: list[Any]) -> bytes:
    """One serialized Event holding a Summary of ``values`` (``Summary.Value`` protobufs)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    return event_pb2.Event(step=step, wall_time=wall, summary=summary_pb2.Summary(value=values)).SerializeToString()


def scalar(tag: str, value: float) -> Any:
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.Summary.Value(tag=tag, simple_value=value)


def tensor_value(tag: str, array: Any, plugin: str | None) -> Any:
    """A tensor summary value, with its plugin's metadata when ``plugin`` is given."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.util import tensor_util

    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(array))
    if plugin is not None:
        value.metadata.plugin_data.plugin_name = plugin
    return value


def write_records(path: Path, records: list[bytes]) -> None:
    """Append ``records`` to ``path`` in TFRecord framing."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    with open(path, "ab") as f:
        writer = RecordWriter(f)
        for record in records:
            writer.write(record)
        writer.flush()
