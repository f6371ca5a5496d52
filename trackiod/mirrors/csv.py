"""CSV mirror: one long-format file per run (``step,timestamp,key,value``), appended as commits arrive.

Long format, because a run's keys appear over time: a wide file would need its header rewritten. Pivot it
with ``pandas.read_csv(path).pivot_table(index="step", columns="key", values="value")``. The config goes
beside it as ``<file stem>.config.json``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from trackio_shim.errors import MirrorError
from trackiod.mirrors.base import Mirror, MirrorBatch

HEADER = ("step", "timestamp", "key", "value")


class CsvMirror(Mirror):
    kind = "csv"

    def open(self) -> None:
        assert self.target is not None
        if self.daemon_wide:
            self.path = os.path.join(self.target, self.run.project, f"{self.run.run_key}.csv")
        elif self.target.endswith(".csv"):
            self.path = self.target
        else:
            self.path = os.path.join(self.target, "metrics.csv")
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise MirrorError(f"cannot create the CSV mirror's directory: {exc}") from None
        self._write_config(self.run.config)

    def write(self, batch: MirrorBatch) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            writer.writerow(HEADER)
        for s in batch.series:
            for step, ts, value in zip(s.steps.tolist(), s.times.tolist(), s.values.tolist()):
                writer.writerow((step, repr(ts), s.key, repr(value)))
        for key, step, ts, text in batch.texts:
            writer.writerow((step, repr(ts), key, text))
        with open(self.path, "a", newline="") as f:  # one write per batch: a reader never sees half a row
            f.write(buffer.getvalue())

    def update_config(self, items: dict[str, Any]) -> None:
        self.run.config.update(items)
        self._write_config(self.run.config)

    def _write_config(self, config: dict[str, Any]) -> None:
        path = os.path.splitext(self.path)[0] + ".config.json"
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(config, f, indent=2, default=str)
        os.replace(tmp, path)

    def close(self, state: str | None) -> None:
        """Nothing stays open between batches."""
