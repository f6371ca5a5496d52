"""Compaction: merge a node's small part files in a partition folder into one, in one Hub commit (docs/sync.md).

Each sync tick adds one part file per partition folder that changed (``points/project=p/run_id=r/<source>-<tick>``),
so a run synced every five minutes for a week would hold about 2,000 files per kind. After a tick's commit, any
folder where this node holds more than ``compact_at`` part files is compacted: its newest ``compact_at`` files, and
older ones while each is no bigger than what is merged so far, are downloaded, concatenated in tick order (the
rows and their ``seq`` unchanged) and written as one file named after the newest tick merged
(``<source>-<tick>-c.parquet``). The merged file is added and its inputs deleted in **one** commit, and a Hub commit
is atomic: a reader of any revision sees either the parts or the merged file, never both, never neither. Each
file left is bigger than all newer ones together, so a folder holds at most ``compact_at`` plus about log2(rows)
files however long the run goes on, and each row is rewritten about log2 times in all.

A run that has ended (finished or failed) writes no more part files, so its folders are merged down to
**one** file each as soon as they hold more than one (``FINAL_MERGE_BYTES`` caps that last merge: a folder bigger
than that keeps the geometric rule, whose files are already few and big). A sweep of many short runs then
leaves one file per run and kind, not one per tick. Files never move between run folders: engines take
``run_id`` from the folder name (DuckDB's and pyarrow's Hive partitioning override a file's own column with it,
and DuckDB refuses a glob whose files have different partition keys), so a file may hold one run's rows only.

The inputs are read from the Hub's listing of the folder at compaction time, never from local state alone, so
a compaction whose commit was in doubt is simply done again or found done: the same listing gives the same
merge, or shows the merged file with its inputs gone.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trackiod.sync.hub import Hub
from trackiod.sync.layout import write_atomic

log = logging.getLogger("trackiod.sync")

#: A folder holding more than this many of one node's part files is compacted after the tick that passed it.
COMPACT_AT = 16
#: The states of a run that writes no more part files. Not "crashed": a run marked crashed may still be alive
#: (a forwarded rank quiet past the heartbeat timeout shows as crashed on the head until it logs again), and each
#: such flip would rewrite its folders whole; a crashed run keeps the geometric rule.
ENDED_STATES = ("finished", "failed")
#: At most this many folders are compacted after one commit (each costs a listing and a download): a repository
#: synced by a trackiod that did not merge ended runs has every such run's folders due at once after the upgrade,
#: and they are then merged over the following commits instead of in one burst.
FOLDERS_PER_COMPACTION = 64
#: An ended run's folder is merged into one file when its files add up to at most this many bytes.
FINAL_MERGE_BYTES = 256 * 1024 * 1024


def part_tick(name: str, source: str) -> int | None:
    """The tick in a part file's name (``<source>-<tick>.parquet`` or ``…-c.parquet``); None if not ``source``'s."""
    found = re.fullmatch(rf"{re.escape(source)}-(\d{{8}})(-c)?\.parquet", name)
    return int(found.group(1)) if found else None


def choose(sizes: list[tuple[int, str, int]], compact_at: int) -> list[str]:
    """Which of ``(tick, path, size)`` (one folder, one node) to merge: nothing while there are at most
    ``compact_at``; else the newest ``compact_at``, and each older file no bigger than everything chosen so far."""
    if len(sizes) <= compact_at:
        return []
    ordered = sorted(sizes)
    chosen = ordered[-compact_at:]
    total = sum(size for _, _, size in chosen)
    for entry in reversed(ordered[:-compact_at]):
        if entry[2] > total:
            break
        chosen.insert(0, entry)
        total += entry[2]
    return [path for _, path, _ in chosen]


def choose_final(sizes: list[tuple[int, str, int]], compact_at: int, limit: int = FINAL_MERGE_BYTES) -> list[str]:
    """Which of an ended run's files (one folder, one node) to merge: all of them, into its one last file, when
    there are several and together they are at most ``limit`` bytes; else what :func:`choose` picks."""
    if len(sizes) > 1 and sum(size for _, _, size in sizes) <= limit:
        return [path for _, path, _ in sorted(sizes)]
    return choose(sizes, compact_at)


@dataclass
class Merge:
    """One folder's compaction: the files merged, and the file that replaces them."""

    folder: str
    inputs: list[str]
    output: str
    rows: int


def compact(
    hub: Hub,
    repo: str,
    source: str,
    folders: list[str],
    staging: Path,
    compact_at: int = COMPACT_AT,
    ended: frozenset[str] = frozenset(),
) -> tuple[list[Merge], dict[str, int]]:
    """Write the merged files of ``folders`` into ``staging``; returns the merges and each folder's file count after.

    Folders in ``ended`` belong to runs that ended (merged down to one file, :func:`choose_final`). Nothing is
    committed here: the caller commits every merge's output and deletes its inputs in one commit.
    """
    merges: list[Merge] = []
    counts: dict[str, int] = {}
    for folder in folders:
        mine = []
        for path, size in hub.list_files(repo, "dataset", folder).items():
            tick = part_tick(path.rsplit("/", 1)[-1], source)
            if tick is not None and path.rsplit("/", 1)[0] == folder:
                mine.append((tick, path, size))
        inputs = choose_final(mine, compact_at) if folder in ended else choose(mine, compact_at)
        counts[folder] = len(mine) - max(0, len(inputs) - 1)
        if not inputs:
            continue
        with tempfile.TemporaryDirectory(prefix="trackiod-compact-") as scratch:
            hub.download_files(repo, "dataset", inputs, Path(scratch))
            tables = [pq.read_table(Path(scratch) / p) for p in inputs]  # tick order: seq order kept
            merged = pa.concat_tables(tables, promote_options="permissive")
            newest = max(t for t, p, _ in mine if p in inputs)
            output = f"{folder}/{source}-{newest:08d}-c.parquet"
            write_atomic(merged, staging / output)
        merges.append(Merge(folder, inputs, output, merged.num_rows))
    return merges, counts
