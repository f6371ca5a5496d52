"""wandb.Table: columns and rows (or a pandas DataFrame) whose cells are numbers, strings, None or media files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trackio_shim.errors import MediaError, UsageError
from trackio_shim.media import Image, Media, module_of
from trackio_shim.media import tensors as T
from trackio_shim.media.audio import Audio
from trackio_shim.media.object3d import Object3D
from trackio_shim.media.video import Video
from trackio_shim.session.encoding import json_friendly

if TYPE_CHECKING:
    from trackio_shim.media.wire import Prepared, WireContext


def _cell(value: Any, ctx: WireContext) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (Image, Video, Audio, Object3D)):
        return value.payload(ctx)
    if module_of(value) == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    if T.is_tensor(value) and value.numel() == 1:
        return value.item()
    return json_friendly(value)


class Table(Media):
    """A table, as ``wandb.Table``: ``columns`` and ``data`` (rows), or a pandas ``dataframe``. Cells hold
    numbers, strings, None, or Images, Videos, Audio and Object3Ds (stored as files by the daemon); other
    values are stored as JSON or their str()."""

    def __init__(
        self,
        columns: Sequence[Any] | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        dataframe: Any = None,
        dtype: Any = None,
        optional: Any = True,
        allow_mixed_types: bool = False,
        log_mode: str | None = None,
    ) -> None:
        self._problem = None
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        data = data if data is not None else rows
        self.data: list[list[Any]] = [list(row) for row in data] if data is not None else []
        if columns is None:
            width = len(self.data[0]) if self.data else 3
            columns = ["Input", "Output", "Expected"] if width == 3 else [f"col{i}" for i in range(width)]
        self.columns: list[str] = [str(c) for c in columns]
        for i, row in enumerate(self.data):
            if len(row) != len(self.columns):
                self._problem = (
                    f"row {i} has {len(row)} values but the table has {len(self.columns)} columns {self.columns}"
                )
                break
        if len(set(self.columns)) != len(self.columns):
            self._problem = f"column names must be unique: {self.columns}"

    def add_data(self, *data: Any) -> None:
        """Append one row, one value per column.

        Raises:
            ValueError: the row does not have one value per column.
        """
        if len(data) != len(self.columns):
            raise ValueError(f"this table has {len(self.columns)} columns {self.columns}; got {len(data)} values")
        self.data.append(list(data))

    def add_column(self, name: str, data: Sequence[Any], optional: bool = False) -> None:
        """Append a column of values, one per existing row (or the first column of an empty table).

        Raises:
            ValueError: the name is taken, or the length does not match the rows.
        """
        name = str(name)
        if name in self.columns:
            raise ValueError(f"column {name!r} already exists")
        values = list(data)
        if self.columns and len(values) != len(self.data):
            raise ValueError(f"column {name!r} has {len(values)} values; the table has {len(self.data)} rows")
        if not self.columns:
            self.data = [[v] for v in values]
        else:
            for row, value in zip(self.data, values):
                row.append(value)
        self.columns.append(name)

    def get_column(self, name: str, convert_to: str | None = None) -> Any:
        """The values of one column, as a list (or a numpy array with ``convert_to="numpy"``).

        Raises:
            ValueError: there is no such column.
        """
        if name not in self.columns:
            raise ValueError(f"no column {name!r}; the columns are {self.columns}")
        index = self.columns.index(name)
        values = [row[index] for row in self.data]
        if convert_to == "numpy":
            import numpy as np

            return np.array(values)
        return values

    def get_index(self) -> list[int]:
        return list(range(len(self.data)))

    def get_dataframe(self) -> Any:
        """The table as a pandas DataFrame.

        Raises:
            UsageError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("Table.get_dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.data, columns=self.columns)

    def _wire(self, key: str, ctx: WireContext, out: Prepared) -> None:
        out.media[key] = self.payload(ctx)

    def payload(self, ctx: WireContext) -> dict[str, Any]:
        """The table's wire form (also the table of a wandb.plot chart)."""
        if self._problem:
            raise MediaError(self._problem)
        rows = [[_cell(value, ctx) for value in row] for row in self.data]
        return {"_type": "table", "columns": list(self.columns), "data": rows}

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<Table {len(self.data)} rows x {len(self.columns)} columns>"
