"""Ranks of a distributed job in the daemon: which run a rank joins, config written once, rank-aware finish.

All of it runs on the single writer inside its open transaction, so two ranks starting at the same moment
are resolved one after the other: the first creates the run, the next finds it. No collective operation,
no coordination between the training processes (docs/ranks.md).

The run identity rule (docs/ranks.md#one-run-per-job) uses only what every daemon that sees the rank's
RUN_START sees alike, its node's and a head's: the job key, the rank, the world size, the rank's start time
and which ranks each run of the job already has. So the node daemons and the head group the ranks into the
same runs whatever order the nodes' frames arrive in, and no daemon needs to know whether another node's
processes are alive: a run takes each rank once, so a resubmitted job (its rank 0 again) starts a new run
while a late rank still finds the run its job's other ranks made, even one that already finished.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from trackio_shim.errors import FrameRejected
from trackiod.store.schema import RunRow
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.ranks")

MAX_WORLD_SIZE = 1 << 20


def rank_params(params: dict[str, Any]) -> tuple[int, int, str | None] | None:
    """``(rank, world_size, job_key)`` of a distributed RUN_START, None for a single process.

    Raises:
        FrameRejected: the rank or world size is not a sensible int, or the job key not a short string.
    """
    rank, world = params.get("rank"), params.get("world_size")
    if rank is None and world is None:
        return None
    if type(rank) is not int or type(world) is not int or not 0 <= rank < world <= MAX_WORLD_SIZE:
        raise FrameRejected(f"rank {rank!r} and world_size {world!r} must be ints with 0 <= rank < world_size")
    job = params.get("job_key")
    if job is not None and (not isinstance(job, str) or not job or len(job) > 256):
        raise FrameRejected("job_key must be a string of 1 to 256 characters")
    return rank, world, job


#: How far apart (seconds) the ranks of one job may start and still join one run; docs/ranks.md.
JOIN_WINDOW_S = 900.0
#: A run that ended so is over for its job: a rank arriving later belongs to a new job with the same key.
_OVER = ("failed", "crashed")


def find_joinable(
    store: Store,
    project: str,
    run_key: str | None,
    name: str | None,
    job: str | None,
    rank: int,
    world: int,
    started: float,
) -> RunRow | None:
    """The run this rank belongs to: by explicit id, else by the job rule; None: this rank starts the run.

    By job key: of the runs of the job (and name) created within :data:`JOIN_WINDOW_S` of this rank's start,
    with the same world size, without this rank yet, with fewer ranks than the world size and not ended
    failed or crashed, the one created closest to this rank's start. A finished one is joined too (reopened):
    its other ranks finished before this one started.
    """
    if run_key:
        row = store.find_run(project, run_key, None)
        return row if row is not None and row["state"] == "running" else None
    if not job:
        return None
    best: tuple[float, RunRow] | None = None
    for row, joined in store.ranks.job_runs(project, job, name, started - JOIN_WINDOW_S):
        if row["state"] in _OVER or (row["world_size"] or 1) != world or rank in joined or len(joined) >= world:
            continue
        distance = abs(float(row["created_at"]) - started)
        if distance <= JOIN_WINDOW_S and (best is None or distance < best[0]):
            best = (distance, row)
    return best[1] if best else None


def start_time(params: dict[str, Any], now: float) -> float:
    """When the rank called init() (its own clock, as sent), or ``now`` if it sent nothing sensible."""
    started = params.get("started")
    return float(started) if isinstance(started, (int, float)) and 0 < started <= now + 60 else now


def _same(a: Any, b: Any) -> bool:
    return bool(json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str))


def merge_config(
    stored: dict[str, Any], incoming: dict[str, Any], may_change: bool
) -> tuple[dict[str, Any], list[str]]:
    """Config written once: new keys are added; a key set differently before is kept as it is.

    ``may_change`` (rank 0 updating its own run after it started) lets changed values through. Returns the
    merged config and the keys whose values disagree.
    """
    merged = dict(stored)
    conflicts = []
    for key, value in incoming.items():
        if key in stored and not _same(stored[key], value):
            conflicts.append(key)
            if not may_change:
                continue
        merged[key] = value
    return merged, conflicts


def conflict_text(conflicts: list[str], rank: int, stored: dict[str, Any], incoming: dict[str, Any]) -> str:
    """The warning a rank gets for config keys that disagree with the run's, naming each key."""
    shown = ", ".join(
        f"{key!r} (rank {rank} has {_short(incoming[key])}, the run keeps {_short(stored[key])})"
        for key in conflicts[:10]
    )
    more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
    return f"config disagrees between ranks: {shown}{more}; the config is written once, rank 0's values win"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def final_state(store: Store, run_id: int, exit_code: int) -> tuple[str, int]:
    """The run's state once its last process finished: failed if any rank failed or never finished."""
    codes = store.ranks.exit_codes(run_id)
    bad = [code for code in codes if code != 0]
    if not bad and exit_code == 0:
        return "finished", 0
    first = next((code for code in bad if code is not None), None)
    return "failed", exit_code if exit_code != 0 else (first if first is not None else 1)


@dataclass
class RankJoin:
    """What a rank joining its job's run changes beyond the ``runs`` row; :meth:`RunBook.start` applies it."""

    run_id: int
    #: The RUN_START reply.
    body: dict[str, Any]
    #: The config this rank passed at init (kept per rank in ``run_ranks``).
    config: dict[str, Any]
    #: Config keys the join added to the run (handed to the mirrors); empty if none.
    added_config: dict[str, Any] = field(default_factory=dict)
    #: (session, text) warnings for ranks that joined earlier and disagree with rank 0's config.
    notices: list[tuple[bytes, str]] = field(default_factory=list)


def join_run(
    store: Store, project: str, params: dict[str, Any], row: RunRow, rank: int, world: int, pid: int | None
) -> RankJoin:
    """Merge a rank into its job's run (``runs`` row only); its config only adds keys (written once).

    A finished run is reopened (a late rank); rank 0 gives the run its id and name unless they were given
    explicitly, so the id rank 0 prints is the run's here and on a head that gets the same frames.
    """
    run_id = row["id"]
    if row["state"] != "running":
        store.update_run(run_id, state="running", exit_code=None, ended_at=None)
        log.info("rank %d of job %s reopened run %s", rank, row["job_key"], row["run_key"])
    if rank == 0 and not params.get("id"):
        row = _named_by_rank0(store, project, params, row)
    stored = json.loads(row["config"])
    incoming = params["config"] if isinstance(params.get("config"), dict) else {}
    earlier = store.ranks.configs(run_id)
    notices: list[tuple[bytes, str]] = []
    if rank == 0:  # rank 0's config is the run's; ranks that joined before it and disagree are told now
        merged = {**stored, **incoming}
        conflicts: list[str] = []
        for other, other_sid, other_config in earlier:
            differ = merge_config(merged, other_config, may_change=False)[1]
            if other > 0 and differ:
                notices.append((other_sid, conflict_text(differ, other, merged, other_config)))
    else:  # before rank 0 joins, a rank only adds keys; after, it is told where it disagrees
        merged, conflicts = merge_config(stored, incoming, may_change=False)
        if not any(other == 0 for other, _, _ in earlier):
            conflicts = []
    pids = json.loads(row["pids"])
    if pid and pid not in pids:
        pids.append(pid)
    store.update_run(
        run_id,
        config=json.dumps(merged, default=str),
        pids=json.dumps(pids),
        world_size=max(world, row["world_size"] or 1),
        updated_at=time.time(),
    )
    body = {"id": row["run_key"], "name": row["name"], "resumed": False, "step": 0, "config": merged}
    body.update(rank=rank, joined=True)
    if conflicts:
        body["config_conflicts"] = conflict_text(conflicts, rank, stored, incoming)
        log.warning("run %s, %s", row["run_key"], body["config_conflicts"])
    log.info("rank %d joined run %s (%s)", rank, row["run_key"], row["job_key"] or "by id")
    added = {k: v for k, v in merged.items() if k not in stored}
    return RankJoin(run_id, body, incoming, added, notices)


def _named_by_rank0(store: Store, project: str, params: dict[str, Any], row: RunRow) -> RunRow:
    """The run, renamed to rank 0's id (and default name, unless a name was given) if another rank made it."""
    key = params.get("default_id")
    if not isinstance(key, str) or not key or key == row["run_key"] or store.find_run(project, key, None):
        return row
    name = None if params.get("name") else params.get("default_name")  # no name given: rank 0's default one
    store.ranks.rename_run(row["id"], key, name if isinstance(name, str) and name else None)
    log.info("run %s takes rank 0's id %s", row["run_key"], key)
    renamed = store.run(row["id"])
    return renamed if renamed is not None else row
