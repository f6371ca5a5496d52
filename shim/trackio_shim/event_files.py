"""TensorBoard event files, decoded one way for both sides: the importer (in the shim) and the daemon's live watch.

An event file is a sequence of TFRecords (an 8-byte length, its masked CRC-32C, the bytes, their CRC), each one
``Event`` protobuf. :func:`read_records` returns the complete records after an offset and the offset after them,
so a file still being written is read again from where the last read stopped. :class:`EventDecoder` turns one
file's events into values in trackiod's wire shapes: numbers and text for LOG, rich values (``{"_type":
"histogram" | "image", ...}``) for MEDIA, the hparams plugin's values as config, and a count of what it skipped,
by reason, so that nobody wonders where a graph went.

The protobuf classes come from the ``tensorboard`` package, imported on first use (``trackiod[tensorboard]``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackio_shim.errors import UsageError

#: Event files are named ``events.out.tfevents.<time>.<host>...``.
EVENT_PREFIX = "events.out.tfevents"
#: Most bins a histogram keeps (the daemon's limit); finer TensorBoard histograms are merged down to it.
MAX_BINS = 512
#: Largest record read (a corrupt length must not make a reader allocate gigabytes).
MAX_RECORD_BYTES = 1 << 28
_HEADER = 12  # uint64 length + uint32 masked crc of the length
_FOOTER = 4  # uint32 masked crc of the data
_IMAGE_MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpeg"), (b"GIF8", "gif"), (b"BM", "bmp"))


class CorruptEventFile(UsageError):
    """A record's length fails its checksum: the file is not a TensorBoard event file, or it is damaged."""


def is_event_file(name: str) -> bool:
    return name.startswith(EVENT_PREFIX)


def event_files(directory: Path) -> list[Path]:
    """The event files directly in ``directory``, in the order they were written (their names start with the time)."""
    try:
        return sorted(p for p in directory.iterdir() if is_event_file(p.name) and p.is_file())
    except OSError:
        return []


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: Path, offset: int) -> tuple[list[bytes], int]:
    """The complete records of ``path`` after byte ``offset``, and the offset after the last of them.

    A record still being written (shorter than its length says) is left for the next call.

    Raises:
        CorruptEventFile: a length does not match its checksum, or is beyond :data:`MAX_RECORD_BYTES`.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    records, pos = [], 0
    while len(data) - pos >= _HEADER:
        length_bytes = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if _masked_crc32c(length_bytes) != length_crc or length > MAX_RECORD_BYTES:
            raise CorruptEventFile(f"{path}: the record at byte {offset + pos} is damaged (its length fails its CRC)")
        end = pos + _HEADER + length + _FOOTER
        if end > len(data):
            break
        records.append(data[pos + _HEADER : pos + _HEADER + length])
        pos = end
    return records, offset + pos


@dataclass
class Decoded:
    """One event's values: ``scalars`` (numbers and text, for LOG) and ``media`` (rich values, for MEDIA)."""

    step: int
    wall_time: float
    scalars: dict[str, Any] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)


def _protos() -> Any:
    try:
        from tensorboard.compat.proto import event_pb2
    except ImportError:
        raise UsageError(
            "reading TensorBoard event files needs the tensorboard package: pip install 'trackiod[tensorboard]'"
        ) from None
    return event_pb2


class EventDecoder:
    """Decodes the events of one file, in order (see the module docstring).

    TensorBoard writes a tag's plugin name with its first value only, so the decoder remembers it per tag.
    """

    def __init__(self, prefix: str = "") -> None:
        """``prefix``: put before every key (``"<dir>/"`` when several directories feed one run)."""
        self.event_pb2 = _protos()
        self.prefix = prefix
        self._plugins: dict[str, str] = {}
        #: The hparams plugin's values (``add_hparams``), for the run's config.
        self.hparams: dict[str, Any] = {}
        #: What was not stored: reason -> tag -> how many values.
        self.skipped: dict[str, dict[str, int]] = {}

    def skip(self, tag: str, reason: str) -> None:
        tags = self.skipped.setdefault(reason, {})
        tags[tag] = tags.get(tag, 0) + 1

    def decode(self, record: bytes) -> Decoded | None:
        """The values of one record; None for one that carries none (the file header, a graph, a log message)."""
        try:
            event = self.event_pb2.Event.FromString(record)
        except Exception:  # protobuf raises its own DecodeError, and others for deeply broken bytes
            self.skip("(record)", "not a readable Event protobuf")
            return None
        which = event.WhichOneof("what")
        if which in ("graph_def", "meta_graph_def", "tagged_run_metadata"):
            self.skip(which, "graphs and run metadata are not stored")
            return None
        if which != "summary":
            return None  # file_version, log_message, session_log: bookkeeping, not values
        out = Decoded(int(event.step), float(event.wall_time))
        for value in event.summary.value:
            self._value(value, out)
        return out if out.scalars or out.media else None

    def _value(self, value: Any, out: Decoded) -> None:
        tag = value.tag
        if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
            self._plugins[tag] = value.metadata.plugin_data.plugin_name
        plugin = self._plugins.get(tag, "")
        kind = value.WhichOneof("value")
        key = self.prefix + tag
        if plugin == "hparams":  # add_hparams: the values are in the metadata, the value itself is empty
            self._hparams(value.metadata.plugin_data.content)
        elif kind == "simple_value":
            out.scalars[key] = float(value.simple_value)
        elif kind == "histo":
            hist = _histogram_proto(value.histo)
            if hist is None:
                self.skip(tag, "empty histograms are not stored")
            else:
                out.media[key] = hist
        elif kind == "image":
            self._image(tag, key, [value.image.encoded_image_string], out)
        elif kind == "audio":
            self.skip(tag, "audio is not stored")
        elif kind == "tensor":
            self._tensor(tag, key, plugin, value, out)
        else:
            self.skip(tag, f"{kind or 'empty'} summary values are not stored")

    def _tensor(self, tag: str, key: str, plugin: str, value: Any, out: Decoded) -> None:
        if plugin == "text":
            strings = [s.decode("utf-8", "replace") for s in value.tensor.string_val]
            if not strings:
                self.skip(tag, "empty text is not stored")
                return
            out.scalars[key.removesuffix("/text_summary")] = "\n".join(strings)
            return
        if plugin == "images":
            self._image(tag, key, list(value.tensor.string_val[2:]), out)
            return
        from tensorboard.util import tensor_util  # numpy, on first tensor

        try:
            array = tensor_util.make_ndarray(value.tensor)
        except Exception as exc:  # an unknown dtype or a malformed tensor
            self.skip(tag, f"unreadable tensor ({type(exc).__name__})")
            return
        if plugin == "histograms":
            hist = _histogram_tensor(array)
            if hist is None:
                self.skip(tag, "histograms that are empty or not k x 3 are not stored")
            else:
                out.media[key] = hist
        elif plugin in ("", "scalars") and array.size == 1:
            item = array.reshape(()).item()
            if isinstance(item, bytes):
                item = item.decode("utf-8", "replace")
            if isinstance(item, bool):
                item = int(item)
            if isinstance(item, (int, float, str)):
                out.scalars[key] = item
            else:
                self.skip(tag, f"{type(item).__name__} values are not stored")
        else:
            self.skip(tag, f"{plugin or 'tensor'} summaries are not stored")

    def _image(self, tag: str, key: str, images: list[bytes], out: Decoded) -> None:
        for i, data in enumerate(images):
            fmt = next((name for magic, name in _IMAGE_MAGIC if data.startswith(magic)), None)
            if fmt is None:
                self.skip(tag, "images in an unknown encoding are not stored")
                continue
            out.media[key if i == 0 else f"{key}/{i}"] = {"_type": "image", "format": fmt, "data": bytes(data)}

    def _hparams(self, content: bytes) -> None:
        from tensorboard.plugins.hparams import plugin_data_pb2

        try:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
        except Exception:
            self.skip("hparams", "unreadable hparams")
            return
        if not data.HasField("session_start_info"):
            return  # the experiment's domain and the session's end carry no values
        for name, val in data.session_start_info.hparams.items():
            which = val.WhichOneof("kind")
            if which == "number_value":
                number = float(val.number_value)
                self.hparams[name] = int(number) if number.is_integer() else number
            elif which in ("string_value", "bool_value"):
                self.hparams[name] = getattr(val, which)
            else:
                self.skip(f"hparams/{name}", "hparams that are neither numbers, strings nor booleans are not stored")


def decode_file(path: Path, decoder: EventDecoder) -> Iterator[Decoded]:
    """Every value of a complete event file (the importer's read)."""
    records, _ = read_records(path, 0)
    for record in records:
        decoded = decoder.decode(record)
        if decoded is not None:
            yield decoded


def describe_skipped(skipped: dict[str, dict[str, int]]) -> list[str]:
    """One line per reason: how many values of which tags were not stored, and why."""
    lines = []
    for reason, tags in sorted(skipped.items()):
        names = sorted(tags)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        lines.append(f"skipped {sum(tags.values())} value(s) of {shown}: {reason}")
    return lines


# ------------------------------------------------------------------------------------------- histograms
def _histogram(edges: list[float], counts: list[float]) -> dict[str, Any] | None:
    """A histogram as MEDIA carries it, empty outer bins trimmed and at most :data:`MAX_BINS` bins."""
    first = next((i for i, c in enumerate(counts) if c), None)
    if first is None:
        return None
    last = max(i for i, c in enumerate(counts) if c)
    counts, edges = counts[first : last + 1], edges[first : last + 2]
    if not all(math.isfinite(e) for e in edges) or not all(math.isfinite(c) for c in counts):
        return None
    if len(counts) > MAX_BINS:
        per = -(-len(counts) // MAX_BINS)
        counts = [sum(counts[i : i + per]) for i in range(0, len(counts), per)]
        edges = [edges[i] for i in range(0, len(edges) - 1, per)] + [edges[-1]]
    values = [int(c) if float(c).is_integer() else float(c) for c in counts]
    return {"_type": "histogram", "values": values, "bins": [float(e) for e in edges]}


def _histogram_proto(histo: Any) -> dict[str, Any] | None:
    """A ``HistogramProto``: bucket ``i`` spans from bucket ``i - 1``'s limit (or ``min``) to its own limit."""
    limits, counts = list(histo.bucket_limit), list(histo.bucket)
    if not counts or len(limits) != len(counts):
        return None
    low, high = float(histo.min), float(histo.max)
    # TensorBoard's default buckets reach +-DBL_MAX: the outer edges are clamped to the values' range.
    edges = [min(low, limits[0]), *limits[:-1], max(high, limits[-2] if len(limits) > 1 else low)]
    edges = [max(min(e, high), low) if math.isfinite(low) and math.isfinite(high) else e for e in edges]
    return _histogram(edges, [float(c) for c in counts])


def _histogram_tensor(array: Any) -> dict[str, Any] | None:
    """The histograms plugin's ``k x 3`` tensor: left edge, right edge and count of each bucket."""
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        return None
    rows = array.tolist()
    edges = [float(rows[0][0]), *(float(r[1]) for r in rows)]
    return _histogram(edges, [float(r[2]) for r in rows])
