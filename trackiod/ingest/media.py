"""Rich values in, rows and files out: the MEDIA messages' histograms, arrays, images, tables, HTML, videos,
audio, 3-D objects, plotly figures, wandb.plot charts and galleries (lists of file values).

Runs in the ingest thread, inside the open transaction. Histograms and arrays are stored inline in the
``media`` table; images (encoded to PNG here, not in the training process), videos and audio given as arrays
(encoded here by trackiod.ingest.encoders), tables (JSON), HTML, 3-D objects and plotly figures are written as
files under ``TRACKIOD_HOME/media`` and the row holds their path. A chart is its table's file plus the chart
spec in the row's ``meta``; a gallery has no ``path`` of its own: ``meta.items`` lists its elements' files.
File names are built from the internal run id, a sanitised key and a content hash, so no key can name a path
outside that folder. Files are written before the commit; a rollback deletes the ones it created, and files
replaced by a newer value at the same (run, key, step) are deleted after the commit that replaced them, as are
a deleted run's files (trackiod.ingest.edits).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from trackio_shim.errors import FrameRejected
from trackiod.ingest.batch import check_key
from trackiod.ingest.encoders import encode_video, encode_wav, to_uint8, video_frames
from trackiod.ingest.stall import NO_SPACE_ERRNOS
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.media")

KINDS = ("histogram", "array", "image", "table", "html", "video", "audio", "object3d", "plotly", "plot", "gallery")
#: The kinds a gallery's elements may have (values stored as one file each).
GALLERY_KINDS = ("image", "video", "audio", "object3d")
MAX_GALLERY_ITEMS = 1000
#: Files stored as given, by kind: format -> (the bytes the file must start with, at which offset).
_MAGIC: dict[str, dict[str, tuple[tuple[bytes, int], ...]]] = {
    "video": {
        "mp4": ((b"ftyp", 4),),
        "mov": ((b"ftyp", 4), (b"moov", 4), (b"wide", 4), (b"mdat", 4)),
        "webm": ((b"\x1a\x45\xdf\xa3", 0),),
        "gif": ((b"GIF87a", 0), (b"GIF89a", 0)),
        "ogg": ((b"OggS", 0),),
    },
    "audio": {
        "wav": ((b"RIFF", 0),),
        "mp3": ((b"ID3", 0), (b"\xff\xfb", 0), (b"\xff\xf3", 0), (b"\xff\xf2", 0)),
        "ogg": ((b"OggS", 0),),
        "flac": ((b"fLaC", 0),),
        "m4a": ((b"ftyp", 4),),
    },
}
_OBJECT3D_FORMATS = ("obj", "gltf", "glb", "babylon", "stl", "pts.json")
ARRAY_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}
)
MAX_BINS = 512
MAX_IMAGE_PIXELS = 1 << 26  # 64 megapixels: larger is refused before decoding
_FILE_FORMATS = {"png": "png", "jpeg": "jpg", "gif": "gif", "webp": "webp", "bmp": "bmp"}
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(key: str) -> str:
    """A file-name-safe, collision-free folder name for a key: letters, digits, ``_.-`` and a hash."""
    readable = _UNSAFE.sub("_", key)[:64].strip(".") or "key"
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class MediaWriter:
    """Stores MEDIA items; see the module docstring."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root
        self._created: list[Path] = []  # files this transaction created (deleted on rollback)
        self._obsolete: list[Path] = []  # files replaced in this transaction (deleted after commit)
        self.written = 0

    def add(self, run_id: int, step: int, ts: float, items: dict[Any, Any]) -> list[tuple[str, str]]:
        """Store every item of one MEDIA message; returns ``(key, reason)`` for each one refused."""
        rejects: list[tuple[str, str]] = []
        for raw_key, payload in items.items():
            name, reason = check_key(raw_key)
            if name is None:
                rejects.append((str(raw_key)[:80], str(reason)))
                continue
            # FrameRejected: a check here refused the value; the builtins: numpy or Pillow refused its data.
            try:
                kind, meta, body, path, files = self._encode(run_id, name, step, payload)
            except (FrameRejected, ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
                rejects.append((name, str(exc)))
                continue
            except OSError as exc:  # permissions: this value is lost, the rest of the call is not
                if exc.errno in NO_SPACE_ERRNOS:
                    raise  # disk full: the whole batch waits for space instead (trackiod.ingest.stall)
                log.error("could not write media file for key %r: %s", name, exc)
                rejects.append((name, f"the daemon could not write its file ({exc.strerror or exc})"))
                continue
            self._insert(run_id, name, step, ts, kind, meta, body, path, files)
        return rejects

    # ------------------------------------------------------------------ transactions
    def committed(self) -> None:
        self._created.clear()
        for path in self._obsolete:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a leftover file costs disk space, never data
                log.warning("could not delete replaced media file %s: %s", path, exc)
        self._obsolete.clear()

    def delete_files(self, relative: list[str]) -> None:
        """Delete files of values whose rows a committed transaction removed (a deleted run), then the folders
        left empty. Called after the commit: a crash in between leaves files behind, never rows naming missing
        files; a file that cannot be deleted costs disk space, never data."""
        root = self.root.resolve()
        for name in relative:
            path = (self.root / name).resolve()
            if root not in path.parents:  # rows name paths inside the folder; refuse rather than trust
                log.warning("not deleting %s: outside the media folder", name)
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete media file %s of a deleted run: %s", path, exc)
                continue
            for folder in path.parents:
                if folder == root:
                    break
                try:
                    folder.rmdir()  # only when empty: another value's file keeps it
                except OSError:
                    break

    def rolled_back(self) -> None:
        for path in self._created:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete media file %s of a rolled-back batch: %s", path, exc)
        self._created.clear()
        self._obsolete.clear()

    def mark(self) -> object:
        """How far the open transaction got (see trackiod.ingest.guard): files created and replaced, rows."""
        return len(self._created), len(self._obsolete), self.written

    def undo_to(self, mark: object) -> None:
        """Delete the files created since ``mark`` and keep the ones replaced since (their rows are back)."""
        assert isinstance(mark, tuple)
        created, obsolete, written = mark
        for path in self._created[created:]:
            path.unlink(missing_ok=True)
        del self._created[created:]
        del self._obsolete[obsolete:]
        self.written = written

    def _insert(
        self,
        run_id: int,
        name: str,
        step: int,
        ts: float,
        kind: str,
        meta: dict[str, Any],
        body: bytes | None,
        path: str | None,
        files: list[str],
    ) -> None:
        conn = self.store.conn
        key_id = self.store.key_id(name)
        old = conn.execute(
            "SELECT path, meta FROM media WHERE run_id=? AND key_id=? AND step=?", (run_id, key_id, step)
        ).fetchone()
        if files:
            meta["files"] = files
        conn.execute(
            "INSERT INTO media(run_id, key_id, step, ts, kind, meta, body, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(run_id, key_id, step) DO UPDATE SET ts=excluded.ts, kind=excluded.kind, "
            "meta=excluded.meta, body=excluded.body, path=excluded.path",
            (run_id, key_id, step, ts, kind, json.dumps(meta, allow_nan=False), body, path),
        )
        if old is not None:
            keep = {path, *files}
            old_files = [old[0], *json.loads(old[1]).get("files", [])]
            self._obsolete.extend(self.root / f for f in old_files if f and f not in keep)
        self.written += 1

    # ------------------------------------------------------------------ encoding
    def _encode(
        self, run_id: int, name: str, step: int, payload: Any
    ) -> tuple[str, dict[str, Any], bytes | None, str | None, list[str]]:
        if not isinstance(payload, dict):
            raise FrameRejected(f"a rich value must be a map, not {type(payload).__name__}")
        kind = payload.get("_type")
        if kind == "histogram":
            return kind, _histogram(payload), None, None, []
        if kind == "array":
            array = _array(payload)
            return kind, {"dtype": array.dtype.name, "shape": list(array.shape)}, array.tobytes(), None, []
        if kind in GALLERY_KINDS:
            meta, path = self._file_value(run_id, name, step, payload, "")
            return kind, meta, None, path, []
        if kind == "gallery":
            return self._gallery(run_id, name, step, payload)
        if kind == "plot":
            return self._plot(run_id, name, step, payload)
        if kind == "plotly":
            text = payload.get("json")
            if not isinstance(text, str):
                raise FrameRejected("a plotly figure must be sent as JSON text")
            figure = json.loads(text)  # ValueError: refused as not JSON
            if not isinstance(figure, dict) or not isinstance(figure.get("data", []), list):
                raise FrameRejected("a plotly figure must be the JSON of an object with a 'data' list")
            path = self._write(run_id, name, step, text.encode("utf-8"), "plotly.json")
            return kind, {"traces": len(figure.get("data", []))}, None, path, []
        if kind == "html":
            html = payload.get("html")
            if not isinstance(html, str):
                raise FrameRejected("HTML must be a string")
            path = self._write(run_id, name, step, html.encode("utf-8"), "html")
            return kind, {}, None, path, []
        if kind == "table":
            return self._table(run_id, name, step, payload)
        raise FrameRejected(f"unknown rich value type {kind!r}; this trackiod stores {', '.join(KINDS)}")

    def _file_value(self, run_id: int, name: str, step: int, payload: Any, suffix: str) -> tuple[dict[str, Any], str]:
        """An image, video, audio or 3-D object written as one file: its meta and its path."""
        if not isinstance(payload, dict):
            raise FrameRejected(f"a rich value must be a map, not {type(payload).__name__}")
        kind = payload.get("_type")
        if kind == "image":
            return self._image(run_id, name, step, payload, suffix)
        meta: dict[str, Any] = {}
        if isinstance(payload.get("caption"), str):
            meta["caption"] = payload["caption"]
        if kind == "video":
            data, ext = self._video(payload, meta)
        elif kind == "audio":
            data, ext = self._audio(payload, meta)
        elif kind == "object3d":
            data, ext = self._object3d(payload)
        else:
            raise FrameRejected(f"a gallery holds {', '.join(GALLERY_KINDS)}, not {kind!r}")
        meta["format"] = ext
        return meta, self._write(run_id, name, step, data, ext, suffix)

    def _video(self, payload: dict[str, Any], meta: dict[str, Any]) -> tuple[bytes, str]:
        fmt, fps = payload.get("format"), payload.get("fps", 4)
        if type(fps) is not int or not 1 <= fps <= 240:
            raise FrameRejected("a video's fps must be an int from 1 to 240")
        meta["fps"] = fps
        if payload.get("raw"):
            frames = video_frames(_array(payload))
            meta.update(frames=int(frames.shape[0]), height=int(frames.shape[1]), width=int(frames.shape[2]))
            return encode_video(frames, fps, str(fmt)), str(fmt)
        return _checked_file(payload, "video"), str(fmt)

    def _audio(self, payload: dict[str, Any], meta: dict[str, Any]) -> tuple[bytes, str]:
        if payload.get("raw"):
            rate = payload.get("sample_rate")
            if type(rate) is not int or not 1 <= rate <= 768_000:
                raise FrameRejected("audio samples need an int sample_rate from 1 to 768000")
            samples = _array(payload)
            data, channels = encode_wav(samples, rate)
            meta.update(sample_rate=rate, channels=channels, duration=round(samples.shape[0] / rate, 6))
            return data, "wav"
        return _checked_file(payload, "audio"), str(payload.get("format"))

    def _object3d(self, payload: dict[str, Any]) -> tuple[bytes, str]:
        fmt = payload.get("format")
        if fmt not in _OBJECT3D_FORMATS:
            raise FrameRejected(f"a 3-D object's format must be one of {', '.join(_OBJECT3D_FORMATS)}, not {fmt!r}")
        if payload.get("raw"):
            points = _array(payload)
            if points.ndim != 2 or points.shape[1] not in (3, 4, 6):
                raise FrameRejected(f"a point cloud of shape {list(points.shape)} is not (N, 3), (N, 4) or (N, 6)")
            return json.dumps(points.astype(np.float64).tolist(), allow_nan=False).encode(), "pts.json"
        data = payload.get("data")
        if not isinstance(data, bytes):
            raise FrameRejected("a 3-D object's data must be bytes")
        if fmt == "pts.json":
            json.loads(data)  # ValueError: refused as not JSON
        return data, str(fmt)

    def _gallery(
        self, run_id: int, name: str, step: int, payload: dict[str, Any]
    ) -> tuple[str, dict[str, Any], None, None, list[str]]:
        items = payload.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_GALLERY_ITEMS:
            raise FrameRejected(f"a gallery needs a list of 1 to {MAX_GALLERY_ITEMS} items")
        stored = []
        for i, item in enumerate(items):
            try:
                meta, path = self._file_value(run_id, name, step, item, f"-i{i}")
            except FrameRejected as exc:
                raise FrameRejected(f"element {i}: {exc}") from None
            stored.append({"kind": item["_type"], "path": path, **meta})
        return "gallery", {"items": stored, "count": len(stored)}, None, None, [s["path"] for s in stored]

    def _plot(
        self, run_id: int, name: str, step: int, payload: dict[str, Any]
    ) -> tuple[str, dict[str, Any], None, str, list[str]]:
        spec, chart = payload.get("spec"), payload.get("chart")
        fields, strings, table = payload.get("fields"), payload.get("strings", {}), payload.get("table")
        if not isinstance(spec, str) or not isinstance(chart, str) or len(spec) > 200 or len(chart) > 40:
            raise FrameRejected("a chart needs a 'spec' and a 'chart' name (strings)")
        if not isinstance(fields, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in fields.items()
        ):
            raise FrameRejected("a chart's fields must map roles to column names")
        if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
            raise FrameRejected("a chart's strings must be a map of strings")
        if not isinstance(table, dict):
            raise FrameRejected("a chart needs its table")
        _, table_meta, _, path, files = self._table(run_id, name, step, table)
        missing = [c for c in fields.values() if c is not None and c not in table_meta["columns"]]
        if missing:
            raise FrameRejected(f"the chart names columns {missing} its table does not have")
        meta = {"spec": spec, "chart": chart, "fields": fields, "strings": {str(k): v for k, v in strings.items()}}
        return "plot", {**meta, **table_meta}, None, path, files

    def _image(
        self, run_id: int, name: str, step: int, payload: dict[str, Any], suffix: str
    ) -> tuple[dict[str, Any], str]:
        from PIL import Image as PILImage

        PILImage.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        fmt = payload.get("format")
        meta: dict[str, Any] = {}
        if isinstance(payload.get("caption"), str):
            meta["caption"] = payload["caption"]
        if fmt == "raw":
            pixels = _pixels(payload)
            image = PILImage.fromarray(pixels)
            mode = payload.get("mode")
            if isinstance(mode, str) and mode in ("L", "RGB", "RGBA") and mode != image.mode:
                image = image.convert(mode)
            out = io.BytesIO()
            image.save(out, format="PNG", compress_level=4)
            data, ext = out.getvalue(), "png"
        elif fmt in _FILE_FORMATS:
            given = payload.get("data")
            if not isinstance(given, bytes):
                raise FrameRejected("an image file's data must be bytes")
            data = given
            try:
                image = PILImage.open(io.BytesIO(data))  # reads the header only
            except Exception as exc:
                raise FrameRejected(f"not a readable {fmt} image ({exc})") from None
            if image.format != _PIL_FORMATS[fmt]:
                raise FrameRejected(f"the data is {image.format}, not {fmt}")
            ext = _FILE_FORMATS[fmt]
        else:
            raise FrameRejected(f"unknown image format {fmt!r}")
        meta.update(width=image.width, height=image.height, format=ext)
        return meta, self._write(run_id, name, step, data, ext, suffix)

    def _table(
        self, run_id: int, name: str, step: int, payload: dict[str, Any]
    ) -> tuple[str, dict[str, Any], None, str, list[str]]:
        columns, rows = payload.get("columns"), payload.get("data")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise FrameRejected("a table's columns must be a list of strings")
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
            raise FrameRejected(f"every row of a table must be a list of {len(columns)} values, one per column")
        files: list[str] = []
        cells: list[list[Any]] = []
        for i, row in enumerate(rows):
            out_row = []
            for j, cell in enumerate(row):
                kind = cell.get("_type") if isinstance(cell, dict) else None
                if kind in GALLERY_KINDS:  # an image, video, audio or 3-D cell: a file of its own
                    meta, path = self._file_value(run_id, name, step, cell, f"-r{i}c{j}")
                    files.append(path)
                    cell = {"_type": f"{kind}-file", "path": path, **meta}
                out_row.append(_json_cell(cell))
            cells.append(out_row)
        body = json.dumps({"columns": columns, "data": cells}, allow_nan=True).encode()
        path = self._write(run_id, name, step, body, "table.json")
        return "table", {"columns": columns, "rows": len(cells)}, None, path, files

    def _write(self, run_id: int, name: str, step: int, data: bytes, ext: str, suffix: str = "") -> str:
        """Write ``data`` under the media folder, content-addressed; returns its path relative to the folder."""
        digest = hashlib.sha256(data).hexdigest()[:16]
        relative = f"{int(run_id)}/{slug(name)}/{int(step)}{suffix}-{digest}.{ext}"
        path = self.root / relative
        root = self.root.resolve()
        if root not in path.resolve().parents:  # cannot happen with the names above; refuse rather than trust
            raise FrameRejected("refused a media path outside the media folder")
        if not path.exists():  # same name, same content: an earlier commit (or a resend) wrote it already
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(data)
            os.replace(partial, path)
            self._created.append(path)
        return relative


def _histogram(payload: dict[str, Any]) -> dict[str, Any]:
    values, bins = payload.get("values"), payload.get("bins")
    if not isinstance(values, list) or not isinstance(bins, list):
        raise FrameRejected("a histogram needs lists 'values' and 'bins'")
    if not 1 <= len(values) <= MAX_BINS or len(bins) != len(values) + 1:
        raise FrameRejected(f"a histogram needs 1 to {MAX_BINS} counts and one more bin edge than counts")
    numbers = [*values, *bins]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise FrameRejected("a histogram's counts and edges must be finite numbers")
    return {"values": values, "bins": [float(b) for b in bins]}


def _array(payload: dict[str, Any]) -> np.ndarray:
    dtype, shape, data = payload.get("dtype"), payload.get("shape"), payload.get("data")
    if dtype not in ARRAY_DTYPES:
        raise FrameRejected(f"arrays of dtype {dtype!r} are not stored; use one of {', '.join(sorted(ARRAY_DTYPES))}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 32:
        raise FrameRejected("an array's shape must be a list of at most 32 non-negative ints")
    if not isinstance(data, bytes):
        raise FrameRejected("an array's data must be bytes")
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise FrameRejected(f"an array of shape {shape} and dtype {dtype} needs {expected} bytes, got {len(data)}")
    return np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _pixels(payload: dict[str, Any]) -> np.ndarray:
    """A raw image payload as HxW or HxWxC uint8 (C 3 or 4), from any layout and numeric dtype."""
    array = _array(payload)
    layout = payload.get("layout")
    expected = {"HW": 2, "HWC": 3, "CHW": 3}.get(layout if isinstance(layout, str) else "")
    if expected is None or array.ndim != expected:
        raise FrameRejected(f"an image of shape {list(array.shape)} does not match its layout {layout!r}")
    if layout == "CHW":
        array = np.transpose(array, (1, 2, 0))
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise FrameRejected(f"an image needs 1, 3 or 4 channels, not {array.shape[2]}")
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS or 0 in array.shape:
        raise FrameRejected(f"an image of {array.shape[0]}x{array.shape[1]} pixels is empty or too large")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return to_uint8(array, bool(payload.get("normalize", True)))


def _checked_file(payload: dict[str, Any], kind: str) -> bytes:
    """A file's bytes, checked to start as its named format does (so the browser is not handed a mislabelled
    file)."""
    fmt, data = payload.get("format"), payload.get("data")
    formats = _MAGIC[kind]
    if fmt not in formats:
        raise FrameRejected(f"a {kind} file's format must be one of {', '.join(formats)}, not {fmt!r}")
    if not isinstance(data, bytes):
        raise FrameRejected(f"a {kind} file's data must be bytes")
    if not any(data[at : at + len(magic)] == magic for magic, at in formats[fmt]):
        raise FrameRejected(f"the data is not a {fmt} file")
    return data


def _json_cell(value: Any) -> Any:
    """A table cell as JSON: containers kept, bytes and other objects as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_cell(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_cell(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
