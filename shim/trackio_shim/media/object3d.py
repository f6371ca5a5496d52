"""wandb.Object3D: a 3-D file or a point cloud, stored as a file the run page offers for download."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from trackio_shim.errors import MediaError
from trackio_shim.media import _FRAME_MARGIN, Media, array_fields, is_ndarray, read_capped
from trackio_shim.session.encoding import json_friendly

if TYPE_CHECKING:
    from trackio_shim.media.wire import WireContext

#: The 3-D file formats wandb accepts, by file extension.
FILE_FORMATS = ("obj", "gltf", "glb", "babylon", "stl", "pts.json")


def _format_of(name: str) -> str | None:
    lower = name.lower()
    return next((f for f in FILE_FORMATS if lower.endswith("." + f)), None)


class Object3D(Media):
    """A 3-D object, as ``wandb.Object3D``: a path or binary file (obj, gltf, glb, babylon, stl, pts.json; a
    file object needs ``file_type``), a point cloud as an array of shape (points, 3), (points, 4) (x, y, z,
    category) or (points, 6) (x, y, z, r, g, b), or a scene dict (``{"type": "lidar/beta", "points": ...}``).
    Stored as a file; the dashboard offers it for download rather than drawing it."""

    def __init__(self, data_or_path: Any, caption: str | None = None, file_type: str | None = None, **kwargs: Any):
        self.data = data_or_path
        self.caption = None if caption is None else str(caption)
        self.file_type = None if file_type is None else str(file_type).lower().lstrip(".")

    @classmethod
    def from_file(cls, data_or_path: Any, file_type: str | None = None) -> Object3D:
        return cls(data_or_path, file_type=file_type)

    @classmethod
    def from_numpy(cls, data: Any) -> Object3D:
        return cls(data)

    @classmethod
    def from_point_cloud(cls, points: Any, boxes: Any = None, vectors: Any = None, **kwargs: Any) -> Object3D:
        scene: dict[str, Any] = {"type": "lidar/beta", "points": points}
        if boxes is not None:
            scene["boxes"] = boxes
        if vectors is not None:
            scene["vectors"] = vectors
        return cls(scene)

    def payload(self, ctx: WireContext) -> dict[str, Any]:
        base: dict[str, Any] = {"_type": "object3d"}
        if self.caption is not None:
            base["caption"] = self.caption
        data = self.data
        if isinstance(data, (str, os.PathLike)) or hasattr(data, "read"):
            name = os.fspath(data) if isinstance(data, (str, os.PathLike)) else str(getattr(data, "name", ""))
            fmt = self.file_type or _format_of(name)
            if fmt not in FILE_FORMATS:
                raise MediaError(
                    f"Object3D({name!r}): unknown 3-D format; give a file ending in "
                    f"{', '.join('.' + f for f in FILE_FORMATS)}, or file_type= for a file object"
                )
            return {**base, "format": fmt, "data": read_capped(data, "a 3-D object", ctx)}
        if is_ndarray(data):
            if data.ndim != 2 or data.shape[1] not in (3, 4, 6) or data.shape[0] == 0:
                raise MediaError(
                    f"a point cloud of shape {tuple(data.shape)} is not (points, 3), (points, 4) or (points, 6)"
                )
            limit = ctx.max_frame_bytes - _FRAME_MARGIN
            return {
                **base,
                "format": "pts.json",
                "raw": True,
                **array_fields(data, "a point cloud", limit, "TRACKIOD_MAX_FRAME_BYTES"),
            }
        if isinstance(data, dict):
            body = json.dumps(json_friendly(data), allow_nan=False).encode()
            if len(body) > ctx.max_frame_bytes - _FRAME_MARGIN:
                raise MediaError(f"a 3-D scene of {len(body):,} bytes is over TRACKIOD_MAX_FRAME_BYTES")
            return {**base, "format": "pts.json", "data": body}
        kind = type(data).__qualname__
        raise MediaError(f"Object3D() takes a path, a binary file, a point-cloud array or a scene dict, not {kind}")
