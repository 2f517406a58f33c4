"""What a scheduling command was asked: where and how its runs execute (`Execution`, with the
SLURM options of `--executor slurm`), and how they ended (`Outcome`). Shared by the local and the
SLURM paths, so neither imports the other's module to name them."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

from blast_core.scheduling.crash import STALE_AFTER_S
from blast_core.scheduling.slots import Placement


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 24 * 60
    """Time limit of each job in minutes; a job that reaches it is requeued (up to 3 times)."""
    gpus_per_job: int = 1
    """GPUs of each job (0: CPU jobs)."""
    runs_per_job: int | None = None
    """Runs packed in one job (default: GPUs per job x runs per GPU, all at once)."""
    cpus_per_job: int | None = None
    max_jobs: int | None = None
    """How many jobs of the array run at once (SLURM's array parallelism)."""
    folder: str | None = None
    """submitit's logs and pickles; on a filesystem every node sees (default under results)."""
    signal_delay_s: int = 120
    """Seconds between SLURM's warning signal and the kill: enough for every run to checkpoint."""
    wait: bool = False
    """Wait for the jobs to end (always for submitit-local)."""


@dataclass(frozen=True)
class Execution:
    """Where and how runs execute (none of it changes what a run computes)."""

    results: Path
    db: str
    placement: Placement = field(default_factory=Placement)
    max_retries: int = 0
    """Relaunches of a run that crashed or failed, per command."""
    stale_after: float = STALE_AFTER_S
    executor: str = "local"
    """local (processes here), slurm (a submitit job array) or submitit-local (the same jobs
    through submitit's local executor, to try the SLURM path on one machine)."""
    slurm: SlurmOptions | None = None
    live: bool | None = None
    """Live table (None: when stderr is a terminal)."""
    mem_per_run: int | None = None
    """Host memory of one run in MiB, for packing and for SLURM's request (None: estimated from
    each run's config, blast_core/scheduling/memory.py)."""
    log: tuple[str, ...] = ()
    """Sinks beside the store for every run started (`--log tensorboard`, `--log wandb`)."""


@dataclass
class Outcome:
    states: dict[str, str]
    """Each run of the command and the state it ended in."""
    interrupted: bool = False
    submitted: list[str] = field(default_factory=list)
    """SLURM job ids, when the runs went to a cluster."""

    @property
    def exit_code(self) -> int:
        """0: every run done (or cancelled by the user) or submitted; 3: stopped; 1: otherwise."""
        if self.interrupted:
            return 3
        if self.submitted:
            return 0
        return 0 if all(s in ("done", "cancelled") for s in self.states.values()) else 1

    def counts(self) -> dict[str, int]:
        return dict(collections.Counter(self.states.values()))
