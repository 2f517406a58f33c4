"""What the scheduler launches: one `blast` command per run, and which runs of a grid need one.

A job is the `blast` verb and arguments that train one run in its own process: `blast run ...`
for a run of a grid (the same command again resumes it), `blast resume RUN` for a run known only
by its id. The scheduler adds where to run it (`--device`, `--threads`) and where to write
(`--results`, `--db`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from blast_core import config as C
from blast_core.config import tree as T
from blast_core.envs import check_env_id
from blast_core.run.sinks import recorded_backends
from blast_core.run.spec import RunSpec, prepare, run_directory
from blast_core.store import RESUMABLE

if TYPE_CHECKING:
    from blast_core.store import Store


@dataclass(frozen=True)
class Job:
    run_id: str
    args: tuple[str, ...]
    """`blast` arguments after the program name, e.g. ("run", "--env", ...)."""


def run_job(spec: RunSpec) -> Job:
    """`blast run` with exactly the options that make up the run's identity."""
    args = ["run", "--env", spec.env, "--rung", spec.rung, "--seed", str(spec.seed),
            "--preset", spec.preset, "--experiment", spec.experiment]
    if spec.steps is not None:
        args += ["--steps", str(spec.steps)]
    for item in spec.overrides:
        args += ["--set", item]
    return Job(spec.run_id, tuple(args))


def resume_job(run_id: str) -> Job:
    return Job(run_id, ("resume", run_id))


def grid(
    envs: Sequence[str],
    rungs: Sequence[str],
    seeds: Iterable[int],
    preset: str,
    experiment: str,
    steps: int | None = None,
    overrides: Sequence[str] = (),
) -> list[RunSpec]:
    """env x rung x seed, each validated (a bad env, rung, preset or key raises before any write).

    Ordered seed-major (all of seed 0 first) so that a partial ladder covers every cell early.
    """
    for env in dict.fromkeys(envs):
        check_env_id(env)
    for rung in rungs:
        C.rung_chain(rung)  # the unknown-rung message lists the valid ones
    seeds = list(seeds)
    specs = [
        RunSpec.make(env, rung, seed, preset, list(overrides), steps, experiment)
        for seed, env, rung in itertools.product(seeds, envs, rungs)
    ]
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise C.ConfigError("the grid names the same run twice (a repeated env, rung or seed)")
    return specs


@dataclass
class Plan:
    jobs: list[Job]
    done: list[str]
    skipped: dict[str, str]
    """Runs left alone, with the reason (cancelled, running elsewhere)."""


def plan(store: Store, specs: Sequence[RunSpec], results: Path,
         log: Sequence[str] = ()) -> Plan:
    """Which runs of the grid need a process: new ones (created here as queued) and unfinished
    ones; done runs are skipped, and so are cancelled runs and runs that are alive elsewhere.
    `log` (`--log`) is recorded with each run that will run: its process logs there too."""
    existing = {r["id"]: r for r in store.runs(specs[0].experiment)} if specs else {}
    out = Plan([], [], {})
    for spec in specs:
        row = existing.get(spec.run_id)
        state = row["status"] if row else None
        if state == "done":
            out.done.append(spec.run_id)
        elif state == "cancelled":
            out.skipped[spec.run_id] = "cancelled (blast resume RUN restarts it)"
        elif state == "running":
            out.skipped[spec.run_id] = f"running on {row['host']} (pid {row['pid']})"
        else:
            # run.json and config.yaml before the row: a run the store knows is resumable by id
            # even when its worker dies before it starts (Ctrl-C in the first second).
            prepare(spec, results, say=lambda _: None)
            recorded_backends(run_directory(results, spec.run_id), log)
            if row is None:
                store.upsert_run(
                    spec.run_id, experiment=spec.experiment, env=spec.env, rung=spec.rung,
                    seed=spec.seed, preset=spec.preset, config=T.to_dict(spec.config()),
                    run_dir=str((results / spec.run_id).resolve()),
                    overrides=spec.override_dict(), steps=spec.steps,
                )
            out.jobs.append(run_job(spec))
    return out


def resumable(store: Store, experiment: str | None = None) -> list[Job]:
    """`blast resume --all/--experiment`: every crashed, failed or interrupted run."""
    return [resume_job(r["id"]) for r in store.runs(experiment) if r["status"] in RESUMABLE]


def job_configs(store: Store, jobs: list[Job]) -> list[dict]:
    """The resolved configs of the jobs' runs, as the store holds them."""
    rows = (store.run(job.run_id) or {} for job in jobs)
    return [row["config"] for row in rows if isinstance(row.get("config"), dict)]
