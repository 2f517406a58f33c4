"""Run a grid of runs (`blast run-ladder`, `blast run-recipe`) or restart runs (`blast resume
--all`): open the store, mark dead runs crashed, decide what needs a process, and execute it
here (the local scheduler) or on SLURM (submitit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blast_core.errors import BlastError
from blast_core.run.sinks import recorded_backends
from blast_core.run.spec import run_directory
from blast_core.scheduling import disk, memory, slurm
from blast_core.scheduling.crash import mark_crashed
from blast_core.scheduling.execution import Execution, Outcome
from blast_core.scheduling.jobs import Job, job_configs, plan, resumable
from blast_core.scheduling.local import Scheduler, blast_command
from blast_core.scheduling.slots import describe, plan_slots
from blast_core.scheduling.view import LogView, View
from blast_core.store import connect

if TYPE_CHECKING:
    from blast_core.run.spec import RunSpec
    from blast_core.store import Store

EXECUTORS = ("local", "slurm", "submitit-local")
PAPER_CPU_UPDATE_S = 10.0
"""One paper-size update on one CPU core, roughly (docs/benchmarks.md: 8-18 s by rung)."""


def cpu_days(cfg: Any) -> float:
    """Rough days one run of `cfg` takes on one CPU core at PAPER_CPU_UPDATE_S per update."""
    s = cfg.schedule
    updates = max(0, s.steps - s.prefill) / s.train_every + s.pretrain
    return updates * PAPER_CPU_UPDATE_S / 86400


CPU_PAPER_NOTE = (
    "note: paper-size runs on CPU workers: one update takes ~8-18 s on a CPU core and a run "
    "makes 4e4 (MiniGrid) to 2e5 (DMC) of them, so each run takes days; on GPUs it is ~0.2-0.5 s. "
    "--preset cpu is sized to finish in about an hour on 2 cores (docs/results.md)")


def run_grid(
    specs: Sequence[RunSpec], ex: Execution, recipe: str | None = None, view: View | None = None
) -> Outcome:
    """Bring every run of a validated grid to an end state; done runs are not touched."""
    check_executor(ex)
    view = view or LogView()
    experiment = specs[0].experiment
    store = connect(ex.db)
    store.ensure_experiment(experiment, recipe)
    for run_id in mark_crashed(store, experiment, ex.stale_after):
        view.event(f"{run_id}: crashed (its process is gone); it will be resumed")
    todo = plan(store, specs, ex.results, ex.log)
    for run_id, why in todo.skipped.items():
        view.event(f"{run_id}: skipped, {why}")
    view.event(f"{experiment}: {len(specs)} runs, {len(todo.done)} done, "
               f"{len(todo.jobs)} to run")
    if todo.jobs and paper_on_cpu(specs, ex):
        view.event(CPU_PAPER_NOTE)
    outcome = execute(store, todo.jobs, ex, view)
    states = {r["id"]: r["status"] for r in store.runs(experiment)}
    outcome.states = {s.run_id: states.get(s.run_id, "missing") for s in specs}
    return outcome


def paper_on_cpu(specs: Sequence[RunSpec], ex: Execution) -> bool:
    """Paper-size runs headed for this machine's CPU workers: worth a note before they start."""
    return ex.executor == "local" and not ex.placement.gpus and any(
        s.preset == "paper" for s in specs)


def resume_all(ex: Execution, experiment: str | None = None, view: View | None = None) -> Outcome:
    """Restart every crashed, failed and interrupted run (of one experiment) from its checkpoint."""
    check_executor(ex)
    view = view or LogView()
    store = connect(ex.db)
    mark_crashed(store, experiment, ex.stale_after)
    jobs = resumable(store, experiment)
    view.event(f"{len(jobs)} run(s) to resume")
    for job in jobs:
        row = store.run(job.run_id) or {}
        why = (row.get("error") or "").strip().splitlines()
        view.event(f"{job.run_id}: {row.get('status')} at step {row.get('step') or 0}"
                   + (f" ({why[0][:160]})" if why else ""))
        recorded_backends(run_directory(ex.results, job.run_id), ex.log)
    return execute(store, jobs, ex, view)


def check_executor(ex: Execution) -> None:
    """Options of a non-local executor that cannot work are errors before anything is written."""
    if ex.executor not in EXECUTORS:
        raise BlastError(f"unknown executor {ex.executor!r}; valid: {', '.join(EXECUTORS)}")
    if ex.executor != "local":
        slurm.check(ex)


def execute(store: Store, jobs: list[Job], ex: Execution, view: View) -> Outcome:
    """Run `jobs` with the chosen executor; the outcome lists the jobs' end states."""
    if not jobs:
        view.close()
        return Outcome({})
    configs = job_configs(store, jobs)
    room = disk.check(ex.results, configs)
    if room:
        view.event(room)
    if ex.executor != "local":
        return slurm.submit(store, jobs, ex, view)
    place, note = memory.fit(ex.placement, configs, memory.available_mib(), ex.mem_per_run)
    if note:
        view.event(note)
    slots = plan_slots(place)
    view.event(describe(slots))
    scheduler = Scheduler(store, jobs, slots, ex.results, blast_command(ex.results, ex.db),
                          ex.max_retries, view)
    states = scheduler.run()
    return Outcome(states, interrupted=bool(scheduler.stop_signal))
