"""Experiment management: `run-ladder`, `run-recipe`, `status`, `ls`, `cancel` and `resume`.

`resume RUN ...` continues the named runs here, one after another (`run_cmd.resume_ids`);
`resume --all` / `--experiment NAME` restarts every crashed, failed and interrupted run through
the scheduler, with the same placement options as `run-ladder`.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from blast_cli import options, run_cmd
from blast_cli import status_view as S
from blast_cli.live import make_view
from blast_core import config as C
from blast_core.errors import BlastError
from blast_core.run.sinks import check_backends
from blast_core.scheduling import (
    PAPER_CPU_UPDATE_S,
    STALE_AFTER_S,
    Execution,
    Outcome,
    cpu_days,
    grid,
    paper_on_cpu,
    placement,
    recipes,
    resume_all,
    run_grid,
)
from blast_core.scheduling.cancel import cancel as cancel_runs
from blast_core.scheduling.crash import mark_crashed
from blast_core.scheduling.execution import SlurmOptions
from blast_core.scheduling.ladder import check_executor
from blast_core.scheduling.view import LogView, View
from blast_core.store import (
    check_destination,
    connect,
    db_url,
    prepare_results_root,
    results_root,
)

if TYPE_CHECKING:
    from blast_core.store import Store


class Executor(StrEnum):
    local = "local"
    slurm = "slurm"
    submitit_local = "submitit-local"


Gpus = Annotated[list[str] | None, typer.Option(
    "--gpus", help="GPUs to use: 0,1 (or --gpus 0 --gpus 1), all or none (default: all "
    "visible, else CPU workers).")]
PerGpu = Annotated[int | None, typer.Option(
    "--per-gpu", help="Runs packed on each GPU at once (default: 4, fewer by cores and memory).")]
Workers = Annotated[int | None, typer.Option(
    "--workers", help="Concurrent CPU runs, no GPU (default without GPUs: one per 2 cores).")]
MemPerRun = Annotated[float | None, typer.Option(
    "--mem-per-run", help="Host memory of one run in GiB, for packing and SLURM's request "
    "(default: estimated from its replay and model).")]
MaxRetries = Annotated[
    int, typer.Option("--max-retries", help="Relaunch a crashed or failed run up to R times.")
]
ExecutorOpt = Annotated[
    Executor, typer.Option("--executor", help="local, slurm or submitit-local.")
]
Partition = Annotated[str | None, typer.Option("--partition", help="SLURM partition.")]
TimeMin = Annotated[int, typer.Option("--time-min", help="SLURM time limit per job (minutes).")]
GpusPerJob = Annotated[int, typer.Option("--gpus-per-job", help="SLURM GPUs per job (0: CPU).")]
CpusPerJob = Annotated[int | None, typer.Option(
    "--cpus-per-job", help="SLURM CPU cores of each job (split among its runs).")]
RunsPerJob = Annotated[
    int | None, typer.Option("--runs-per-job", help="Runs packed in one SLURM job.")
]
Wait = Annotated[bool, typer.Option("--wait", help="Wait for the SLURM jobs to end.")]
StaleAfter = Annotated[
    float, typer.Option("--stale-after", help="Seconds without heartbeat that mean crashed.")
]


AssumeGpus = Annotated[int | None, typer.Option(
    "--assume-gpus", hidden=True, help="Take this machine to have N GPUs: tries the placement "
    "end to end where they are missing (its runs then fail on start).")]
Yes = Annotated[bool, typer.Option(
    "--yes", help="Run paper-size runs on CPU workers anyway (they take days each).")]


def _confirm_paper_on_cpu(specs: list, ex: Execution, yes: bool) -> None:
    """Paper-size runs headed for CPU workers need --yes: each takes days there."""
    if yes or not paper_on_cpu(specs, ex):
        return
    paper = [s for s in specs if s.preset == "paper"]
    days = sum(cpu_days(s.config()) for s in paper) / ex.placement.workers
    raise BlastError(
        f"{len(paper)} paper-size run(s) on {ex.placement.workers} CPU worker(s) and no GPU: "
        f"about {days:.0f} days of wall time (~{PAPER_CPU_UPDATE_S:.0f} s per update on a core). "
        "Give --preset cpu (under an hour a run), or --yes to run them on CPU anyway")


def placement_options(
    results: options.Results = None,
    db: options.Db = None,
    gpus: Gpus = None,
    per_gpu: PerGpu = None,
    workers: Workers = None,
    threads: options.Threads = None,
    max_retries: MaxRetries = 1,
    mem_per_run: MemPerRun = None,
    stale_after: StaleAfter = STALE_AFTER_S,
    no_progress: options.NoProgress = False,
    log: options.Log = None,
) -> SimpleNamespace:
    """Where and how the runs execute: options of `run-ladder`, `run-recipe` and `resume`."""
    return SimpleNamespace(**locals())


def slurm_options(
    executor: ExecutorOpt = Executor.local,
    partition: Partition = None,
    time_min: TimeMin = 24 * 60,
    gpus_per_job: GpusPerJob = 1,
    cpus_per_job: CpusPerJob = None,
    runs_per_job: RunsPerJob = None,
    wait: Wait = False,
) -> SimpleNamespace:
    """On a SLURM cluster: options of `run-ladder` and `run-recipe`."""
    return SimpleNamespace(**locals())


def _execution(p: SimpleNamespace, slurm: SimpleNamespace | None = None,
               assume_gpus: int | None = None, log: list[str] | tuple[str, ...] = ()
               ) -> Execution:
    """Validate the scheduling options (one-line errors, before anything is written)."""
    if p.max_retries < 0:
        raise BlastError(f"--max-retries must be >= 0, got {p.max_retries}")
    if p.mem_per_run is not None and not p.mem_per_run > 0:
        raise BlastError(f"--mem-per-run takes GiB > 0, got {p.mem_per_run}")
    asked = dict(vars(slurm)) if slurm else {}
    executor = asked.pop("executor", Executor.local)
    opts = SlurmOptions(**asked)
    if (opts.time_min < 1 or opts.gpus_per_job < 0
            or any(n is not None and n < 1 for n in (opts.runs_per_job, opts.cpus_per_job))):
        raise BlastError("--time-min, --runs-per-job and --cpus-per-job must be >= 1, "
                         "--gpus-per-job >= 0")
    root = prepare_results_root(p.results, create=False)
    gpus = ",".join(p.gpus) if p.gpus else None  # repeated, the values add up
    per_gpu = p.per_gpu
    if executor != Executor.local:
        # A job's GPUs and cores are SLURM's (--gpus-per-job): look at none here.
        gpus, per_gpu = gpus or "none", per_gpu or 1
    place = placement(gpus, per_gpu, p.workers, p.threads, visible=assume_gpus)
    mem = p.mem_per_run
    return Execution(root, db_url(p.db, root), place, p.max_retries, p.stale_after,
                     executor.value, opts, live=False if p.no_progress else None,
                     mem_per_run=None if mem is None else round(mem * 1024),
                     log=check_backends([*log, *(p.log or [])]))


def _view(ex: Execution) -> View:
    """The live table on a terminal for runs that execute here; event lines otherwise (a pipe,
    --no-progress, or SLURM, whose runs report from their jobs)."""
    return make_view(ex.live) if ex.executor == "local" else LogView()


def _finish(outcome: Outcome) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts().items()))
    typer.echo(f"{len(outcome.states)} runs: {counts or 'nothing to do'}", err=True)
    raise typer.Exit(outcome.exit_code)


@options.with_groups(placement_options, slurm_options)
def run_ladder(
    env: Annotated[list[str], typer.Option("--env", "-e", help="An env id (repeatable).")],
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds 0..N-1 per env and rung.")] = 1,
    rungs: options.Rungs = None,
    preset: options.Preset = "paper",
    steps: Annotated[int | None, typer.Option("--steps", help="Agent steps of each run.")] = None,
    set_: options.Set = None,
    experiment: options.Experiment = "default",
    yes: Yes = False,
    assume_gpus: AssumeGpus = None,
    placement_options: SimpleNamespace | None = None,
    slurm_options: SimpleNamespace | None = None,
) -> None:
    """Run the grid env x rung x seed; done runs are skipped, unfinished ones resumed."""
    if seeds < 1:
        raise BlastError(f"--seeds must be >= 1, got {seeds}")
    rung_ids = options.rung_list(rungs or list(C.LADDER_IDS))
    specs = grid(env, list(rung_ids), range(seeds), preset, experiment, steps, list(set_ or []))
    assert placement_options is not None  # with_groups passes it
    ex = _execution(placement_options, slurm_options, assume_gpus)
    _run(specs, ex, yes, placement_options)


def _run(specs: list, ex: Execution, yes: bool, placed: SimpleNamespace,
         recipe: str | None = None) -> None:
    _confirm_paper_on_cpu(specs, ex, yes)
    check_executor(ex)
    check_destination(placed.db, placed.results)  # the last check, and the first write
    _finish(run_grid(specs, ex, recipe=recipe, view=_view(ex)))


@options.with_groups(placement_options, slurm_options)
def run_recipe(
    recipe: Annotated[Path, typer.Argument(help="A recipe YAML file (see recipes/).")],
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="Override the recipe's experiment.")
    ] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", help="Only this env of the recipe's (repeatable).")] = None,
    rungs: Annotated[list[str] | None, typer.Option(
        "--rungs", help="Only these of the recipe's rungs (--rungs dv2,ar_prior).")] = None,
    seed: Annotated[list[str] | None, typer.Option(
        "--seed", help="Only these of the recipe's seeds (--seed 0,2 or repeated).")] = None,
    yes: Yes = False,
    placement_options: SimpleNamespace | None = None,
    slurm_options: SimpleNamespace | None = None,
) -> None:
    """Run every run a recipe names (checked in full before anything is written).

    --env, --rungs and --seed run a part of it first; the recipe run again runs the rest."""
    loaded = recipes.load(recipe)
    chosen = recipes.narrow(loaded, env or (), options.rung_list(rungs) if rungs else (),
                            options.seed_list(seed) if seed else ())
    specs = recipes.specs(chosen, experiment)
    assert placement_options is not None  # with_groups passes it
    ex = _execution(placement_options, slurm_options, log=loaded.log)
    _run(specs, ex, yes, placement_options, recipe=loaded.text)


@options.with_groups(placement_options)
def resume(
    run_ids: Annotated[
        list[str] | None, typer.Argument(help="Run ids EXPERIMENT/RUN_NAME, resumed here in turn.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every crashed, failed and interrupted run.")
    ] = False,
    experiment: options.OneExperiment = None,
    device: options.Device = "auto",
    deterministic: options.Deterministic = False,
    placement_options: SimpleNamespace | None = None,
) -> None:
    """Continue runs from their last checkpoints (named ones here; --all through the scheduler)."""
    p = placement_options
    assert p is not None  # with_groups passes it
    if run_ids and (all_ or experiment):
        raise BlastError("give run ids, or --all / --experiment NAME, not both")
    if run_ids:
        run_cmd.resume_ids(run_ids, device=device, deterministic=deterministic,
                           results=p.results, db=p.db, threads=p.threads,
                           no_progress=p.no_progress, log=p.log)
        return
    if not (all_ or experiment):
        raise BlastError("nothing to resume: give run ids, --all or --experiment NAME")
    _store(p.results, p.db).close()  # no database here: nothing to resume, none to create
    ex = _execution(p)
    _finish(resume_all(ex, experiment, view=_view(ex)))


def _console() -> Console:
    """A terminal's width, or unlimited into a pipe or file (tables are never cut there)."""
    return Console() if sys.stdout.isatty() else Console(width=10_000)


def _store(results: str | None, db: str | None) -> Store:
    """The database these commands read and act on; never created by them."""
    return connect(db_url(db, results_root(results)), existing=True)


def status(
    experiment: options.OneExperiment = None,
    watch: Annotated[float | None, typer.Option(
        "--watch", help="Redraw every S seconds until no run is queued or running.")] = None,
    results: options.Results = None,
    db: options.Db = None,
    stale_after: StaleAfter = STALE_AFTER_S,
) -> None:
    """The env x rung x seed matrix of each experiment: states, progress and last scores."""
    store = _store(results, db)
    if watch is not None:
        try:
            S.watch(store, experiment, watch, _console(), stale_after)
        except KeyboardInterrupt:
            pass  # stopping the watch is not an error
        return
    view, _ = S.render(store, experiment, stale_after)
    _console().print(view)


def ls(results: options.Results = None, db: options.Db = None) -> None:
    """Every experiment and its runs by state."""
    store = _store(results, db)
    mark_crashed(store)
    _console().print(S.experiments_table(store))


def cancel(
    run_ids: Annotated[list[str] | None, typer.Argument(help="Run ids to cancel.")] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="Every unfinished run of it.")
    ] = None,
    results: options.Results = None,
    db: options.Db = None,
) -> None:
    """Cancel runs: running ones here are stopped at a checkpoint first."""
    if bool(run_ids) == bool(experiment):
        raise BlastError("give run ids or --experiment NAME (one of them)")
    store = _store(results, db)
    if experiment:
        S.status_tables(store, experiment)  # an unknown experiment is an error
        run_ids = [r["id"] for r in store.runs(experiment)]
    for run_id, what in cancel_runs(store, list(run_ids or [])).items():
        typer.echo(f"{run_id}: {what}")


def register(app: typer.Typer) -> None:
    """Add the experiment commands (`resume` with run ids resumes them as `run_cmd` does)."""
    for name, fn in (("run-ladder", run_ladder), ("run-recipe", run_recipe), ("status", status),
                     ("ls", ls), ("cancel", cancel)):
        app.command(name, no_args_is_help=name.startswith("run-"))(fn)
    app.command("resume", no_args_is_help=True)(resume)
