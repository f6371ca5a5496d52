"""TensorBoard mirror: numeric series as scalar events, text values and the config as text summaries.

Written with TensorBoard's own event-file writer and protos (no TensorFlow, no torch). A resumed run appends
a new event file to the same directory, which TensorBoard reads as one run.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from trackio_shim.errors import MirrorError
from trackiod.mirrors.base import Mirror, MirrorBatch, import_sdk


class TensorBoardMirror(Mirror):
    kind = "tensorboard"

    def open(self) -> None:
        writer_module = import_sdk("tensorboard", "tensorboard.summary.writer.event_file_writer")
        self._pb = {
            name: import_sdk("tensorboard", f"tensorboard.compat.proto.{name}")
            for name in ("event_pb2", "summary_pb2", "tensor_pb2", "tensor_shape_pb2", "types_pb2")
        }
        logdir = self.run_dir()
        try:
            os.makedirs(logdir, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise MirrorError(f"cannot create the TensorBoard log directory: {exc}") from None
        self._writer = writer_module.EventFileWriter(logdir)
        if self.run.config:
            self._text_event("config", json.dumps(self.run.config, indent=2, default=str), 0, None)
        self._writer.flush()

    def write(self, batch: MirrorBatch) -> None:
        event_pb2, summary_pb2 = self._pb["event_pb2"], self._pb["summary_pb2"]
        for step, ts, row in batch.rows():
            values = []
            for key, value in row.items():
                if isinstance(value, str):
                    self._text_event(key, value, step, ts)
                else:
                    values.append(summary_pb2.Summary.Value(tag=key, simple_value=value))
            if values:
                summary = summary_pb2.Summary(value=values)
                self._writer.add_event(event_pb2.Event(wall_time=ts, step=step, summary=summary))
        self._writer.flush()

    def update_config(self, items: dict[str, Any]) -> None:
        self.run.config.update(items)
        self._text_event("config", json.dumps(self.run.config, indent=2, default=str), 0, None)
        self._writer.flush()

    def _text_event(self, tag: str, text: str, step: int, ts: float | None) -> None:
        pb = self._pb
        tensor = pb["tensor_pb2"].TensorProto(
            dtype=pb["types_pb2"].DT_STRING,
            string_val=[text.encode()],
            tensor_shape=pb["tensor_shape_pb2"].TensorShapeProto(
                dim=[pb["tensor_shape_pb2"].TensorShapeProto.Dim(size=1)]
            ),
        )
        metadata = pb["summary_pb2"].SummaryMetadata(
            plugin_data=pb["summary_pb2"].SummaryMetadata.PluginData(plugin_name="text")
        )
        value = pb["summary_pb2"].Summary.Value(tag=tag, metadata=metadata, tensor=tensor)
        event = pb["event_pb2"].Event(step=step, summary=pb["summary_pb2"].Summary(value=[value]))
        event.wall_time = ts if ts is not None else time.time()
        self._writer.add_event(event)

    def close(self, state: str | None) -> None:
        self._writer.close()
