"""``/api/runs?format=columns``: the runs table's compact answer holds what the row answer holds (issue 15's
10,000-run table budget), with config and summary flattened and NaN spelled as the row answer spells it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.dashboard import client, fill, settings_for


def flat(value: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {} if out is None else out
    if isinstance(value, dict) and value:
        if prefix and list(value) == ["value"]:
            return flat(value["value"], prefix, out)
        for k, v in value.items():
            flat(v, f"{prefix}.{k}" if prefix else k, out)
    else:
        out[prefix] = value
    return out


def test_columns_answer_matches_rows(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fill(home, runs=4, config={"nested": {"list": [1, 2.5, "x"]}, "wrapped": {"value": 3}, "weird": float("nan")})
    with client(settings_for(home)) as http:
        rows = http.get("/api/runs", params={"project": "proj"}).json()
        cols = http.get("/api/runs", params={"project": "proj", "format": "columns"}).json()
        bad = http.get("/api/runs", params={"project": "proj", "format": "csv"})
    assert bad.status_code == 400 and "format" in bad.json()["error"]
    assert cols["format"] == "columns" and cols["n"] == 4 and "now" in cols
    names = rows["columns"]
    for i, row in enumerate(rows["rows"]):
        run = dict(zip(names, row))
        for field, values in cols["base"].items():
            assert values[i] == run[field], field
        config = {k: v[i] for k, v in cols["config"].items() if v[i] is not None}
        summary = {k: v[i] for k, v in cols["summary"].items() if v[i] is not None}
        assert config == flat(run["config"]) and config["wrapped"] == 3 and config["weird"] == "NaN"
        assert summary == flat(run["summary"])
