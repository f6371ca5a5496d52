"""Moving a repository this node synced in layout 1 or 2 to layout 3 (``key=value`` folders), in one commit.

The first pass after an upgrade exports everything this node has for the repository again, into the new
folders, and deletes in the same commit the old-layout files that this export replaces: this node's own part
files (named ``<source>-<tick>``) and the whole-file kinds of the runs, hosts and projects it exports. The Hub
commit is atomic, so a reader sees the old layout or the new one, never a row twice. Files written by other
nodes, or of runs this node no longer has, stay where they are (readers of this package read both layouts).
"""

from __future__ import annotations

from typing import Any

from trackiod.sync.layout import segment

#: Kinds whose old files are part files named by source and tick.
_PART_KINDS = ("points", "texts", "media", "system")
#: Kinds whose old files are one file per run (``kind/<project>/<run_id>.parquet``).
_RUN_KINDS = ("runs", "energy")
_ARTIFACT_KINDS = ("artifacts/versions", "artifacts/aliases", "artifacts/usage")


def is_old_layout(path: str) -> bool:
    """A Parquet file under a layout folder whose folders are not ``key=value`` (layout 1 or 2)."""
    folders = path.split("/")[:-1]
    return path.endswith(".parquet") and bool(folders) and not any("=" in f for f in folders)


def old_files_replaced(listing: list[str], source: str, runs: list[dict[str, Any]]) -> list[str]:
    """The old-layout files of ``listing`` that a full export of ``runs`` by ``source`` replaces."""
    whole = set()
    hosts, projects = set(), set()
    for run in runs:
        for kind in _RUN_KINDS:
            whole.add(f"{kind}/{segment(run['project'])}/{segment(run['run_key'])}.parquet")
        if run.get("host"):
            hosts.add(segment(run["host"]))
        projects.add(segment(run["project"]))
    whole |= {f"{kind}/{host}.parquet" for host in hosts for kind in ("nodes", "gpus")}
    replaced = []
    for path in listing:
        if not is_old_layout(path):
            continue
        name = path.rsplit("/", 1)[-1]
        if (
            (path.split("/", 1)[0] in _PART_KINDS and name.startswith(f"{source}-"))
            or path in whole
            or any(path.startswith(f"{kind}/") and path.split("/")[2] in projects for kind in _ARTIFACT_KINDS)
        ):
            replaced.append(path)
    return sorted(replaced)
