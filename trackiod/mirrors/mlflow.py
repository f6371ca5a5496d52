"""MLflow mirror: one MLflow run per trackiod run, in the experiment named after the project.

A path or ``file:`` target uses MLflow's file store (MLflow 3 keeps it in maintenance mode, behind
``MLFLOW_ALLOW_FILE_STORE``, which this mirror sets for the daemon); ``sqlite:///`` needs the full ``mlflow``
package in the daemon's environment; ``http(s)://`` talks to a tracking server.

Numeric series become metrics (``log_batch``, 1,000 per call), the config becomes params (flattened as
``a.b``). Text values are not mirrored: MLflow metrics are numbers only. The MLflow run is tagged
``trackiod.run = <project>/<run id>``, so a resumed trackiod run (or a daemon restart) finds the same MLflow
run again instead of creating a new one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from trackiod.mirrors.base import Mirror, MirrorBatch, flat_config, import_sdk

_BATCH = 1000
_PARAM_CHARS = 6000
_STATES = {"finished": "FINISHED", "failed": "FAILED", "crashed": "KILLED"}
_BAD_KEY = re.compile(r"[^\w\-. :/]")


def metric_key(key: str) -> str:
    """A name MLflow accepts (letters, digits, ``_-. :/``); anything else becomes ``_``."""
    return _BAD_KEY.sub("_", key)


class MlflowMirror(Mirror):
    kind = "mlflow"

    def open(self) -> None:
        tracking = import_sdk("mlflow", "mlflow.tracking")
        self._entities = import_sdk("mlflow", "mlflow.entities")
        uri = self.target
        if uri is not None and uri.startswith("/"):
            uri = Path(uri).as_uri()
        if uri is not None and uri.startswith("file:"):
            # MLflow 3 keeps its file store behind this switch ("maintenance mode"); a path target asks for it.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = tracking.MlflowClient(tracking_uri=uri)
        project = self.run.project
        experiment = self.client.get_experiment_by_name(project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`trackiod.run` = '{self.run.path}'", max_results=1
        )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self._params = dict(found[0].data.params)
        else:
            created = self.client.create_run(
                experiment_id,
                run_name=self.run.name,
                tags={"trackiod.run": self.run.path, "trackiod.project": project, "trackiod.run_id": self.run.run_key},
            )
            self.run_id = created.info.run_id
            self._params = {}
        self.update_config(self.run.config)

    def write(self, batch: MirrorBatch) -> None:
        metric_cls = self._entities.Metric
        metrics = []
        for s in batch.series:
            key = metric_key(s.key)
            for step, ts, value in zip(s.steps.tolist(), s.times.tolist(), s.values.tolist()):
                metrics.append(metric_cls(key, value, int(ts * 1000), step))
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])

    def update_config(self, items: dict[str, Any]) -> None:
        # MLflow params cannot change once set: a changed value is recorded as a tag instead.
        param_cls = self._entities.Param
        params, tags = [], []
        for key, value in flat_config(items).items():
            text = str(value)[:_PARAM_CHARS]
            name = metric_key(key)
            if name not in self._params:
                params.append(param_cls(name, text))
                self._params[name] = text
            elif self._params[name] != text:
                tags.append(self._entities.RunTag(f"config.{name}", text))
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        if tags:
            self.client.log_batch(self.run_id, tags=tags)

    def close(self, state: str | None) -> None:
        if state is not None:
            self.client.set_terminated(self.run_id, _STATES.get(state, "FINISHED"))
