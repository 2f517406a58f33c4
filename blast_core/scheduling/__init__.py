"""Scheduling many runs: the grid (jobs), device slots, what a command was asked and how its
runs ended (execution), the local scheduler (local), SLURM through submitit (slurm), recipes,
crash detection, and the status views.

    run_grid(grid(envs, rungs, seeds, preset, experiment), Execution(results, db, placement))

Each run is its own `blast run` process; see local.py for who writes what to the database.
"""

from blast_core.scheduling.crash import STALE_AFTER_S, mark_crashed
from blast_core.scheduling.execution import Execution, Outcome
from blast_core.scheduling.jobs import Job, grid, plan, resumable
from blast_core.scheduling.ladder import (
    EXECUTORS,
    PAPER_CPU_UPDATE_S,
    cpu_days,
    paper_on_cpu,
    resume_all,
    run_grid,
)
from blast_core.scheduling.local import Scheduler, blast_command
from blast_core.scheduling.slots import Placement, Slot, placement, plan_slots, slot_env

__all__ = [
    "EXECUTORS",
    "PAPER_CPU_UPDATE_S",
    "STALE_AFTER_S",
    "Execution",
    "Job",
    "Outcome",
    "Placement",
    "Scheduler",
    "Slot",
    "blast_command",
    "cpu_days",
    "grid",
    "mark_crashed",
    "paper_on_cpu",
    "placement",
    "plan",
    "plan_slots",
    "resumable",
    "resume_all",
    "run_grid",
    "slot_env",
]
