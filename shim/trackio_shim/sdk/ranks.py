"""Which rank of a distributed job this process is, and which job: the one place the shim decides (docs/ranks.md).

Launchers tell each process its place through the environment: torchrun (and accelerate, DeepSpeed) set
RANK, LOCAL_RANK and WORLD_SIZE; Slurm sets SLURM_PROCID, SLURM_LOCALID and SLURM_NTASKS; Open MPI sets
OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_LOCAL_RANK and OMPI_COMM_WORLD_SIZE; MPICH/Intel MPI set PMI_RANK and
PMI_SIZE. The job key, which makes every rank of one job join one run, comes from TRACKIOD_JOB_ID,
TORCHELASTIC_RUN_ID (unless torchrun left it at "none"), SLURM_JOB_ID (with SLURM_STEP_ID), Open MPI's
job id, or else the rendezvous address MASTER_ADDR:MASTER_PORT that every rank of a torch job shares.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from trackio_shim.errors import UsageError

# (rank, local rank, world size) variables per launcher, most specific first.
_LAUNCHERS = (
    ("RANK", "LOCAL_RANK", "WORLD_SIZE"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"),
    ("PMI_RANK", "MPI_LOCALRANKID", "PMI_SIZE"),
)


@dataclass(frozen=True)
class RankInfo:
    """This process's place in its job; ``rank`` 0 and ``world_size`` 1 when it is not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int | None = None
    job_key: str | None = None
    source: str = ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.rank > 0


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def job_key(env: Mapping[str, str]) -> str | None:
    """The key every rank of one job shares (None when nothing names the job)."""
    explicit = env.get("TRACKIOD_JOB_ID", "").strip()
    if explicit:
        return explicit
    elastic = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if elastic and elastic != "none":
        return f"torchelastic:{elastic}"
    slurm = env.get("SLURM_JOB_ID", "").strip()
    if slurm:
        step = env.get("SLURM_STEP_ID", "").strip()
        return f"slurm:{slurm}" + (f".{step}" if step else "")
    ompi = env.get("OMPI_MCA_ess_base_jobid", "").strip() or env.get("PMIX_NAMESPACE", "").strip()
    if ompi:
        return f"mpi:{ompi}"
    addr, port = env.get("MASTER_ADDR", "").strip(), env.get("MASTER_PORT", "").strip()
    if addr and port:
        return f"rendezvous:{addr}:{port}"
    return None


def detect(rank: int | None = None, world_size: int | None = None, env: Mapping[str, str] | None = None) -> RankInfo:
    """This process's rank, world size, local rank and job key; explicit values win over the environment.

    Raises:
        UsageError: an explicit rank or world size is not a non-negative int, or the rank is not below the size.
    """
    env = os.environ if env is None else env
    found_rank: int | None = None
    found_size: int | None = None
    local: int | None = None
    source = ""
    for rank_var, local_var, size_var in _LAUNCHERS:
        found_rank = _int(env, rank_var)
        if found_rank is not None:
            found_size, local, source = _int(env, size_var), _int(env, local_var), rank_var
            break
    for value, what in ((rank, "rank"), (world_size, "world_size")):
        if value is not None and (type(value) is not int or value < 0):
            raise UsageError(f"init({what}={value!r}): pass a non-negative int")
    if rank is not None:
        found_rank, source = rank, "init(rank=...)"
    if world_size is not None:
        found_size = world_size
    final_rank = found_rank or 0
    final_size = max(found_size or 1, 1)
    if final_rank >= final_size and (rank is not None or world_size is not None):
        raise UsageError(f"init(rank={final_rank}, world_size={final_size}): the rank must be below the world size")
    final_size = max(final_size, final_rank + 1)
    return RankInfo(final_rank, final_size, local, job_key(env) if final_size > 1 else None, source)


def process_rank() -> int:
    """This process's global rank as its launcher set it (0 when not distributed)."""
    return detect().rank
