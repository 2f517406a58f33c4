"""`--executor slurm` against a real one-node SLURM (scripts/slurm-local.sh: slurmctld, slurmd,
slurmdbd on MariaDB, munged), with the runs' shared database on the suite's PostgreSQL.

Each test submits CPU jobs through the real sbatch and drives them with the real scancel and
scontrol: preemption by the warning signal (USR2, what `--signal` sends before a time limit or a
preemption) and by SIGTERM (`scontrol requeue`, SLURM's PreemptMode=REQUEUE), a cancel, and a
job whose process is SIGKILLed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from ladder_helpers import (
    ENVS,
    blast,
    parent,
    running_with_checkpoint,
    start_blast,
    tiny,
    wait_for,
)

from blast_core.store import Store

# One cluster: under pytest-xdist every test of it runs in the same worker.
pytestmark = [pytest.mark.usefixtures("slurm_cluster"), pytest.mark.xdist_group("slurm")]

# Long enough that a signal sent once a run has trained past its first checkpoint lands mid-run.
# Long enough that both runs are still training when the test signals them (their first
# checkpoint is at step 50), short enough to run twice per test.
STEPS = 500
LONG = tiny(STEPS)
# Rows that measure the machine, not the run: they differ between any two runs.
TIMING = ("time_", "steps_per_s", "updates_per_s", "host_", "peak_mem")
LOSSES = ("model_loss", "image_loss", "reward_loss", "kl", "actor_loss", "critic_loss")


def ladder(url: str, results: Path, experiment: str, *extra: object,
           rungs: str = "dv2") -> list[object]:
    """`blast run-ladder --executor slurm` of tiny CPU runs, two seeds of each rung."""
    return ["run-ladder", "--env", ENVS[0], "--rungs", rungs, "--seeds", 2, "--executor", "slurm",
            "--gpus-per-job", 0, "--time-min", 30, "--experiment", experiment, "--no-progress",
            "--results", results, "--db", url, *extra]


def submitted(err: str) -> list[str]:
    """The job ids a submitting command printed."""
    found = re.search(r"submitted \d+ job\(s\).*?: ([\d_, ]+); logs in", err)
    assert found, err
    return [j.strip() for j in found.group(1).split(",")]


def submit_mid_run(url: str, results: Path, experiment: str) -> tuple[Store, str, list[dict]]:
    """Submit two long tiny runs in one job and return once both train past a checkpoint: the
    store, the job (as the runs recorded it) and the runs. The test watches the database while
    the submitting command is still exiting, so a slow machine cannot let the runs end first."""
    store = Store.open(url)  # the schema first: the command and this test never both create it
    proc = start_blast(*ladder(url, results, experiment, *LONG, "--runs-per-job", 2,
                               "--cpus-per-job", 2, "--threads", 1))
    runs = wait_for(lambda: running_with_checkpoint(store, experiment, 2), timeout=240,
                    what="both runs training past a checkpoint", seen=states(store, experiment))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (job,) = submitted(err)
    assert {r["slurm_job"] for r in runs} == {job}
    return store, job, runs


def squeue(job: str) -> str:
    """The job's state in squeue ('' once it has left the queue)."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def sacct_state(job: str) -> str:
    """The job's final state in SLURM's accounting (what submitit asks); it follows squeue by a
    moment, hence `ended`."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State"],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    return lines[-1].split()[0] if lines else ""  # "CANCELLED by 0" -> CANCELLED


def ended(job: str) -> str:
    """Wait until the job has left the queue and accounting has its final state; that state."""
    wait_for(lambda: squeue(job) == "", timeout=120, what=f"job {job} to leave the queue")
    return wait_for(lambda: (s := sacct_state(job)) not in ("", "PENDING", "RUNNING",
                                                              "REQUEUED") and s,
                    timeout=60, what=f"accounting's final state of job {job}")


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for its new parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def all_in(store: Store, experiment: str, states: set[str], count: int) -> list[dict] | None:
    runs = store.runs(experiment)
    return runs if len(runs) == count and {r["status"] for r in runs} <= states else None


def states(store: Store, experiment: str) -> Callable[[], list[tuple]]:
    """What a timed-out wait prints: each run's state, step, error and launches."""
    return lambda: [(r["status"], r["step"], r["error"], r["launches"])
                    for r in store.runs(experiment)]


def metric_table(store: Store, experiment: str) -> dict[tuple[int, str, int], float]:
    """(seed, name, step) -> value of every row that is not a timing."""
    frame = store.metrics_frame(experiment)
    assert not frame.duplicated(["run_id", "name", "step"]).any()
    seeds = {r["id"]: r["seed"] for r in store.runs(experiment)}
    return {(seeds[r.run_id], r.name, int(r.step)): r.value for r in frame.itertuples()
            if not r.name.startswith(TIMING)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The runs the preemption tests interrupt, run here without a break (CPU runs are
    deterministic): every metric row of dv2 seeds 0 and 1."""
    results = tmp_path_factory.mktemp("reference") / "results"
    url = f"sqlite:///{results / 'blast.db'}"
    out = blast("run-ladder", "--env", ENVS[0], "--rungs", "dv2", "--seeds", 2, *LONG,
                "--workers", 2, "--threads", 1, "--experiment", "ref", "--no-progress",
                "--results", results, "--db", url)
    assert out.returncode == 0, out.stderr
    return metric_table(Store.open(url), "ref")


def test_a_tiny_ladder_runs_to_done_and_status_names_each_runs_job(
        pg_url: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    out = blast(*ladder(pg_url, results, "sl", *tiny(), "--runs-per-job", 2, "--cpus-per-job", 1,
                        "--wait", rungs="dv2,ar_prior"))
    assert out.returncode == 0, out.stderr
    jobs = submitted(out.stderr)
    assert len(jobs) == 2 and all(re.fullmatch(r"\d+_[01]", j) for j in jobs)
    runs = Store.open(pg_url).runs("sl")
    assert len(runs) == 4 and {r["status"] for r in runs} == {"done"}
    assert {r["step"] for r in runs} == {150}
    by_job = {j: [r["name"] for r in runs if r["slurm_job"] == j] for j in jobs}
    assert sorted(map(len, by_job.values())) == [2, 2]  # several runs per job
    assert {ended(j) for j in jobs} == {"COMPLETED"}

    shown = blast("status", "--experiment", "sl", "--results", results, "--db", pg_url)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("done") == 4 + 1  # four cells and the counts line
    assert "slurm jobs:" in shown.stdout
    for job, names in by_job.items():
        line = next(ln for ln in shown.stdout.splitlines() if ln.strip().startswith(job + " "))
        assert all(name in line for name in names)


@pytest.mark.parametrize("how", ["usr2", "sigterm"])
def test_a_preempted_job_is_requeued_and_its_runs_end_as_if_never_stopped(
        how: str, pg_url: str, tmp_path: Path, uninterrupted: dict) -> None:
    results = tmp_path / "results"
    store, job, _ = submit_mid_run(pg_url, results, "pre")
    if how == "usr2":  # the warning before a time limit or a preemption (sbatch --signal)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
    else:  # what `scontrol requeue` and PreemptMode=REQUEUE send: SIGTERM, then SIGKILL
        subprocess.run(["scontrol", "requeue", job], check=True)
    runs = wait_for(lambda: all_in(store, "pre", {"done"}, 2), timeout=240,
                    what="the requeued job's runs to finish", seen=states(store, "pre"))

    for run in runs:
        assert run["step"] == STEPS and run["launches"] == 2, run
        assert run["slurm_job"] == job
        log = (results / run["id"] / "worker.log").read_text()
        assert log.count("=== ") == 2 and "interrupted by signal" in log
    # Nothing lost, nothing twice, and every loss as in the runs that were never stopped.
    resumed = metric_table(store, "pre")
    assert resumed.keys() == uninterrupted.keys()
    assert {k: v for k, v in resumed.items() if k[1] in LOSSES} == \
        {k: v for k, v in uninterrupted.items() if k[1] in LOSSES}
    assert ended(job) == "COMPLETED"


def test_a_cancelled_job_leaves_its_runs_resumable(pg_url: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    store, job, _ = submit_mid_run(pg_url, results, "can")
    subprocess.run(["scancel", job], check=True)
    runs = wait_for(lambda: all_in(store, "can", {"cancelled", "interrupted"}, 2), timeout=120,
                    what="the runs to stop", seen=states(store, "can"))
    assert all(0 < r["step"] < STEPS for r in runs)
    assert ended(job) == "CANCELLED"

    resumed = blast("resume", "--all", "--workers", 2, "--no-progress",
                    "--results", results, "--db", pg_url)
    assert resumed.returncode == 0, resumed.stderr
    assert {(r["status"], r["step"]) for r in store.runs("can")} == {("done", STEPS)}
    metric_table(store, "can")  # no row twice


def test_a_job_killed_outright_leaves_crashed_runs_that_resume(pg_url: str,
                                                               tmp_path: Path) -> None:
    results = tmp_path / "results"
    store, job, runs = submit_mid_run(pg_url, results, "kill")
    # SIGKILL to every process of the job step, runs first, as when its node dies: nothing can
    # checkpoint or write a last state.
    for run in runs:
        os.kill(run["pid"], signal.SIGKILL)
    os.kill(parent(runs[0]["pid"]), signal.SIGKILL)
    assert ended(job) == "FAILED"

    shown = blast("status", "--experiment", "kill", "--results", results, "--db", pg_url)
    assert shown.returncode == 0, shown.stderr
    after = store.runs("kill")
    assert {r["status"] for r in after} == {"crashed"}, [r["error"] for r in after]
    assert shown.stdout.count("is gone") == 2  # why each crashed

    resumed = blast("resume", "--all", "--workers", 2, "--no-progress",
                    "--results", results, "--db", pg_url)
    assert resumed.returncode == 0, resumed.stderr
    assert {(r["status"], r["step"]) for r in store.runs("kill")} == {("done", STEPS)}
    metric_table(store, "kill")


def test_runs_never_outlive_their_jobs_process(pg_url: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    store, job, runs = submit_mid_run(pg_url, results, "orphan")
    # The job's own process (its runs' scheduler and parent) dies without a word: the kernel
    # tells each run (parent-death signal), which checkpoints and stops instead of running on
    # outside the job's allocation.
    os.kill(parent(runs[0]["pid"]), signal.SIGKILL)
    after = wait_for(lambda: all_in(store, "orphan", {"interrupted"}, 2), timeout=120,
                     what="the runs to stop", seen=states(store, "orphan"))
    assert all(0 < r["step"] < STEPS for r in after)
    wait_for(lambda: not any(alive(r["pid"]) for r in runs), timeout=60, what="the runs to exit")
    assert ended(job) in ("FAILED", "CANCELLED")


def test_slurm_refuses_sqlite_before_anything_is_written(tmp_path: Path) -> None:
    results = tmp_path / "results"
    out = blast("run-ladder", "--env", ENVS[0], "--rungs", "dv2", "--seeds", 1, *tiny(),
                "--executor", "slurm", "--gpus-per-job", 0, "--results", results)
    assert out.returncode != 0
    assert "give a shared PostgreSQL --db" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not results.exists()
