"""Beyond one machine: the same runs as a submitit job array on SLURM.

Runs are packed into jobs (`runs_per_job`, default: as many as the job holds at once, i.e.
GPUs per job x runs per GPU). Each job runs the local scheduler inside its allocation, so the
device pinning, retries and crash handling are the ones of `blast run-ladder`. Runs on many
hosts need a shared database: PostgreSQL (`--db postgresql+psycopg://...`).

How a job ends early (tests/test_slurm.py drives each through a real SLURM):
- preemption or time limit: SLURM sends USR2 `signal_delay_s` before the end (`--signal`);
  submitit calls `RunPack.checkpoint`, which stops every run (each writes a checkpoint and marks
  itself interrupted) and requeues the same pack, whose runs resume from their checkpoints;
- `scontrol requeue`, PreemptMode=REQUEUE, `scancel`: SIGTERM, which submitit ignores but the
  pack's scheduler and the runs themselves take as a stop: every run checkpoints and is
  interrupted; a requeued job resumes them, a cancelled one leaves them to `blast resume`;
- the job's process killed outright: its runs get SIGTERM from the kernel (parent-death signal)
  and stop the same way, never running on outside the job's allocation;
- the node lost: runs left `running` are found dead (lock or heartbeat) and marked crashed by
  `blast status` or the requeued job, and resume from their last checkpoint.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blast_core.errors import BlastError
from blast_core.scheduling import memory
from blast_core.scheduling.execution import Execution, Outcome, SlurmOptions
from blast_core.scheduling.jobs import Job, job_configs
from blast_core.scheduling.local import Scheduler, blast_command
from blast_core.scheduling.slots import Placement, plan_slots, visible_gpus
from blast_core.scheduling.watch import Watch
from blast_core.store import connect

if TYPE_CHECKING:
    from blast_core.scheduling.view import View
    from blast_core.store import Store


class SlurmError(BlastError):
    """SLURM options that cannot work (no sbatch, SQLite shared across hosts)."""


def pack_placement(opts: SlurmOptions, per_gpu: int, size: int) -> Placement:
    """Slots inside one job: its GPUs x per_gpu, or one CPU worker per run of the pack."""
    if opts.gpus_per_job:
        return Placement(tuple(range(opts.gpus_per_job)), per_gpu)
    return Placement(workers=size)


def slurm_job_id() -> str | None:
    """This process's SLURM job as squeue names it (`<array job>_<task>` in an array), or None
    outside SLURM."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


class RunPack:
    """One job of the array: runs `jobs` with the local scheduler; checkpointable by submitit."""

    def __init__(self, jobs: list[Job], results: str, db: str, placement: Placement,
                 max_retries: int, cpus: int | None) -> None:
        self.jobs, self.results, self.db = jobs, results, db
        self.placement, self.max_retries, self.cpus = placement, max_retries, cpus
        self._scheduler: Scheduler | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_scheduler"} | {"_scheduler": None}

    def __call__(self) -> dict[str, str]:
        store = connect(self.db)
        if job_id := slurm_job_id():
            store.set_slurm_job([job.run_id for job in self.jobs], job_id)
        for job in self.jobs:
            # This pack alone owns its runs: one left `running` is from this job's previous
            # incarnation (killed before it could checkpoint), so resume it.
            if (store.run(job.run_id) or {}).get("status") == "running":
                store.set_status(job.run_id, "crashed", expect=["running"],
                                 error="crashed: its SLURM job ended before the run stopped")
        self._scheduler = Scheduler(
            store, self.jobs, plan_slots(self.placement, self.cpus), Path(self.results),
            blast_command(Path(self.results), self.db), self.max_retries)
        return self._scheduler.run()

    def checkpoint(self) -> Any:
        """Preempted or timed out: stop every run at a checkpoint, then requeue this pack."""
        if self._scheduler is not None:
            self._scheduler.stop()
        again = RunPack(self.jobs, self.results, self.db, self.placement, self.max_retries,
                        self.cpus)
        return _submitit().helpers.DelayedSubmission(again)


def check(ex: Execution) -> None:
    """Refuse SLURM options that cannot work, before anything is written."""
    if ex.executor == "submitit-local":  # its jobs run here: this machine's GPUs are theirs
        seen, asked = visible_gpus(), (ex.slurm or SlurmOptions()).gpus_per_job
        if asked > seen:
            raise SlurmError(f"--gpus-per-job {asked}: submitit-local runs its "
                             f"jobs here, where torch sees {seen} GPU(s) (--gpus-per-job 0 for "
                             "CPU jobs)")
    if ex.executor != "slurm":
        return
    if shutil.which("sbatch") is None:
        raise SlurmError("--executor slurm: no sbatch on this machine (submit from a login node)")
    if ex.db.startswith("sqlite"):
        raise SlurmError("--executor slurm runs on many hosts: give a shared PostgreSQL --db "
                         "(SQLite's locking does not work across machines)")


def job_mem_mib(ex: Execution, opts: SlurmOptions, configs: list[dict], per_job: int) -> int:
    """Host memory to ask for each job: the runs it holds at once x one run's (the largest)."""
    gpu = bool(opts.gpus_per_job)
    need = ex.mem_per_run or max((memory.run_mib(c, gpu) for c in configs),
                                 default=memory.GPU_BASE_MIB if gpu else memory.CPU_BASE_MIB)
    return min(per_job, pack_placement(opts, ex.placement.per_gpu, per_job).size) * need


def _submitit() -> Any:
    import submitit.helpers  # here, not at import: `blast` starts without it

    return submitit


def _executor(ex: Execution, opts: SlurmOptions, folder: Path, mem_mib: int) -> Any:
    submitit = _submitit()
    check(ex)
    if ex.executor == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=opts.time_min, signal_delay_s=opts.signal_delay_s,
                                   gpus_per_node=opts.gpus_per_job)
        return executor
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
    params: dict[str, Any] = dict(time=opts.time_min, gpus_per_node=opts.gpus_per_job or None,
                                  ntasks_per_node=1, signal_delay_s=opts.signal_delay_s,
                                  job_name="blast", mem=f"{math.ceil(mem_mib / 1024)}G")
    params |= {k: v for k, v in (("partition", opts.partition),
                                 ("cpus_per_task", opts.cpus_per_job),
                                 ("array_parallelism", opts.max_jobs)) if v is not None}
    executor.update_parameters(**params)
    return executor


POLL_S = 5.0
"""How often a command that waits on its jobs reads the store to show their runs."""


def wait(array: list[Any], watch: Watch, view: View) -> None:
    """Until every job of `array` has ended, show its runs as the store has them (each running
    one's slot is its job); then say why any job failed (its runs' states say what happened)."""
    while not all(job.done() for job in array):
        rows = watch.rows()
        jobs = {r["id"]: f"job {r['slurm_job'] or ''}".strip() for r in rows
                if r["status"] == "running"}
        watch.refresh(view, jobs, rows=rows)
        time.sleep(POLL_S)
    watch.refresh(view, {}, last=True)
    for job in array:
        try:
            job.result()
        except Exception as e:
            view.event(f"job {job.job_id}: {str(e).strip().splitlines()[-1][:300]}")


def submit(store: Store, jobs: list[Job], ex: Execution, view: View) -> Outcome:
    """Submit the runs as one job array; wait for it when asked (or when local)."""
    opts = ex.slurm or SlurmOptions()
    per_job = opts.runs_per_job or max(1, opts.gpus_per_job) * ex.placement.per_gpu
    folder = Path(opts.folder or Path(ex.results) / "slurm").resolve()
    mem_mib = job_mem_mib(ex, opts, job_configs(store, jobs), per_job)
    executor = _executor(ex, opts, folder, mem_mib)
    packs = [jobs[i: i + per_job] for i in range(0, len(jobs), per_job)]
    results = str(Path(ex.results).resolve())
    with executor.batch():  # one job array
        array = [
            executor.submit(RunPack(pack, results, ex.db,
                                    pack_placement(opts, ex.placement.per_gpu, len(pack)),
                                    ex.max_retries, opts.cpus_per_job))
            for pack in packs
        ]
    submitted = [str(job.job_id) for job in array]
    shown = ", ".join(submitted[:8]) + (" ..." if len(submitted) > 8 else "")
    view.event(f"submitted {len(packs)} job(s) of up to {per_job} run(s), "
               f"{math.ceil(mem_mib / 1024)} GiB of host memory each: {shown}; logs in {folder}")
    if ex.executor == "slurm" and not opts.wait:
        return Outcome({j.run_id: "queued" for j in jobs}, submitted=submitted)
    wait(array, Watch(store, [j.run_id for j in jobs]), view)
    states = {r["id"]: r["status"] for r in store.runs()}
    return Outcome({j.run_id: states.get(j.run_id, "missing") for j in jobs})

