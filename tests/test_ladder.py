"""Experiment management end to end: the scheduler, crashes, resume, recipes, status, SLURM's path.

Every run here is a real `blast run` process training a tiny agent on real MiniGrid, launched by
the real `blast` CLI; the database is a real SQLite file (test_postgres.py: PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from ladder_helpers import (
    ENVS,
    TINY,
    blast,
    blast_here,
    cli_env,
    dump,
    ladder_end_to_end,
    parent,
    running_with_checkpoint,
    start_blast,
    tiny,
    wait_for,
)
from rich.console import Console
from sqlalchemy import update

from blast_cli import status_view as S
from blast_core.errors import BlastError
from blast_core.run.spec import RunSpec
from blast_core.scheduling import (
    Job,
    Placement,
    Scheduler,
    mark_crashed,
    placement,
    plan_slots,
    recipes,
    slot_env,
)
from blast_core.scheduling.execution import Execution
from blast_core.scheduling.jobs import grid, plan
from blast_core.scheduling.ladder import paper_on_cpu
from blast_core.scheduling.slots import describe, visible_gpus
from blast_core.store import Store
from blast_core.store.models import Run

REPO = Path(__file__).resolve().parents[1]


def where(tmp_path: Path) -> tuple[Path, str, list[str]]:
    results = tmp_path / "results"
    url = f"sqlite:///{results / 'blast.db'}"
    return results, url, ["--results", str(results), "--db", url]


# --- placement: pure functions -------------------------------------------------------------------


def test_slots_pack_k_runs_per_gpu_and_split_the_cores() -> None:
    slots = plan_slots(Placement(gpus=(0, 1), per_gpu=2), cpus=16)
    assert [s.gpu for s in slots] == [0, 1, 0, 1]  # the first runs spread over the GPUs
    assert {s.threads for s in slots} == {4} and {s.device for s in slots} == {"cuda:0"}
    env = slot_env(slots[1], base={"PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["MUJOCO_EGL_DEVICE_ID"] == "1"
    assert env["OMP_NUM_THREADS"] == "4" and env["PATH"] == "/bin"
    # Inside an allocation that shows GPUs 4 and 6, index 1 is physical GPU 6.
    inside = slot_env(slots[1], base={"CUDA_VISIBLE_DEVICES": "4,6"})
    assert inside["CUDA_VISIBLE_DEVICES"] == "6" and inside["MUJOCO_EGL_DEVICE_ID"] == "6"
    cpu = plan_slots(Placement(workers=3), cpus=2)
    assert [(s.gpu, s.threads, s.device) for s in cpu] == [(None, 1, "cpu")] * 3
    assert slot_env(cpu[0], base={})["CUDA_VISIBLE_DEVICES"] == ""
    # --threads overrides the even split: a machine shared with other work.
    assert {s.threads for s in plan_slots(placement(None, 1, 1, threads=1), cpus=16)} == {1}
    assert {s.threads for s in plan_slots(placement(None, 1, 1), cpus=16)} == {16}
    with pytest.raises(BlastError, match="--threads must be >= 1, got 0"):
        placement(None, 1, 2, threads=0)


def test_default_placement_is_every_visible_gpu_else_cpu_workers() -> None:
    def auto(gpus=None, per_gpu=None, workers=None, visible=4, cpus=32, gpu_mib=81_559):
        return placement(gpus, per_gpu, workers, visible=visible, cpus=cpus, gpu_mib=gpu_mib)

    assert auto() == Placement((0, 1, 2, 3), per_gpu=4)  # several small runs on each GPU
    line = describe(plan_slots(auto(), cpus=32))
    assert line == "4 GPUs (0,1,2,3) x 4 runs each, 2 threads per run"
    assert auto(visible=8, cpus=16).per_gpu == 2  # at most a run per core
    assert auto(gpu_mib=8_192).per_gpu == 2 and auto(gpu_mib=2_048).per_gpu == 1  # and per 4 GiB
    assert auto("all", 3, visible=2).per_gpu == 3  # a given K is never capped
    assert auto("1", visible=2) == Placement((1,), per_gpu=4)
    # No GPU seen, --workers, or --gpus none: CPU workers, by default one per two cores.
    for cpu in [auto(visible=0, cpus=16), auto(workers=8, cpus=16), auto("none", cpus=16)]:
        assert cpu.gpus == () and cpu.workers == 8
        assert describe(plan_slots(cpu, cpus=16)) == "8 CPU workers, 2 threads per run, no GPU"
    assert auto(visible=0, cpus=1).workers == 1
    with pytest.raises(BlastError, match="--workers is for CPU runs"):
        auto("all", workers=2)
    # GPUs asked for that are not there: an error before anything starts (every run placed
    # there would fail on start).
    with pytest.raises(BlastError, match="--gpus all: torch sees no GPU here"):
        auto("all", visible=0)
    with pytest.raises(BlastError, match=r"GPU 0,1 but torch sees 0 GPUs here: leave --gpus out"):
        auto("0,1", visible=0)
    with pytest.raises(BlastError, match=r"GPU 2 but torch sees 2 GPUs here \(0 to 1\)$"):
        auto("1,2", visible=2)
    assert auto("0,1", visible=2).gpus == (0, 1)
    assert auto("none", visible=0).gpus == ()
    # This machine, as it is: its own GPUs, or CPU workers when it has none.
    assert placement(None, None, None).gpus == tuple(range(visible_gpus()))


def test_paper_size_runs_on_cpu_workers_get_a_note() -> None:
    paper, tiny = (grid([ENVS[0]], ["dv2"], [0], preset, "x") for preset in ("paper", "tiny"))
    cpu = Execution(Path("r"), "sqlite://", placement(None, None, None, visible=0, cpus=2))
    gpu = Execution(Path("r"), "sqlite://", placement(None, 1, None, visible=1, cpus=2))
    assert paper_on_cpu(paper, cpu) and not paper_on_cpu(tiny, cpu)
    assert not paper_on_cpu(paper, gpu) and not paper_on_cpu(paper, replace(cpu, executor="slurm"))


# A stand-in for `blast run` that records what its process received, then ends its run as done.
RECORDER = textwrap.dedent("""
    import json, os, sys, time
    from blast_core.store import Store
    run_id, url, out = sys.argv[1:4]
    store = Store.open(url)
    store.set_status(run_id, "running")
    t0 = time.time()
    time.sleep(0.5)
    keys = ("CUDA_VISIBLE_DEVICES", "MUJOCO_EGL_DEVICE_ID", "OMP_NUM_THREADS")
    record = {k: os.environ.get(k) for k in keys} | {"run": run_id, "argv": sys.argv[4:],
                                                       "t0": t0, "t1": time.time()}
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\\n")
    store.set_status(run_id, "done")
""")


def stand_in_jobs(store: Store, experiment: str, n: int, tmp_path: Path,
                  config: dict | None = None) -> list[Job]:
    """n dv2 runs r0 ... of `experiment` in the store, as jobs for a stand-in command."""
    jobs = []
    for i in range(n):
        run_id = f"{experiment}/r{i}"
        store.upsert_run(run_id, experiment=experiment, env="minigrid:unmodified", rung="dv2",
                         seed=i, preset="tiny", config=config or {},
                         run_dir=str(tmp_path / run_id))
        jobs.append(Job(run_id, ()))
    return jobs


def test_scheduler_never_packs_more_than_k_runs_on_a_gpu(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'blast.db'}"
    store = Store.open(url)
    jobs = stand_in_jobs(store, "pack", 7, tmp_path)
    out = tmp_path / "records.jsonl"

    def command(job: Job, slot) -> list[str]:
        return [sys.executable, "-c", RECORDER, job.run_id, url, str(out), "--device",
                slot.device, "--threads", str(slot.threads)]

    slots = plan_slots(Placement(gpus=(0, 1), per_gpu=2), cpus=8)
    states = Scheduler(store, jobs, slots, tmp_path, command).run()
    assert set(states.values()) == {"done"}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 7
    for r in records:
        assert r["CUDA_VISIBLE_DEVICES"] in ("0", "1")
        assert r["MUJOCO_EGL_DEVICE_ID"] == r["CUDA_VISIBLE_DEVICES"]
        assert r["argv"] == ["--device", "cuda:0", "--threads", "2"] and r["OMP_NUM_THREADS"] == "2"
    for gpu in ("0", "1"):
        spans = [(r["t0"], r["t1"]) for r in records if r["CUDA_VISIBLE_DEVICES"] == gpu]
        # A process of a slot starts after the previous one of that slot ended, so the number of
        # this GPU's runs alive at any run's start is bounded by its slots.
        assert max(sum(a <= t < b for a, b in spans) for t, _ in spans) <= 2
    assert {r["launches"] for r in store.runs("pack")} == {1}


# A stand-in for `blast run` that spends 50 s of loop time (as its time rows say) on its 100
# steps, in 1.5 s of wall time: longer than the scheduler's refresh interval.
TIMED_RUN = textwrap.dedent("""
    import sys, time
    from blast_core.store import Store
    run_id, url = sys.argv[1:3]
    store = Store.open(url)
    store.set_status(run_id, "running")
    time.sleep(1.5)
    store.append_metrics(run_id, [(100, 100, "time_update_s", 45.0),
                                  (100, 100, "time_env_s", 5.0)])
    store.heartbeat(run_id, 100)
    store.set_status(run_id, "done")
""")


class Recording:
    """A View that keeps what the scheduler showed it."""

    def __init__(self) -> None:
        self.lefts: list = []
        self.wheres: list = []
        self.events: list = []

    def event(self, text: str) -> None:
        self.events.append(text)

    def refresh(self, rows, latest, where, left=None) -> None:
        self.lefts.append(left)
        self.wheres.append(where)

    def close(self) -> None:
        pass


def test_the_scheduler_shows_the_run_time_left_as_runs_finish(tmp_path: Path) -> None:
    from blast_core.scheduling.eta import Left

    url = f"sqlite:///{tmp_path / 'blast.db'}"
    store = Store.open(url)
    jobs = stand_in_jobs(store, "eta", 3, tmp_path, {"schedule": {"steps": 100, "prefill": 0}})
    view = Recording()
    scheduler = Scheduler(store, jobs, plan_slots(Placement(workers=1), cpus=1), tmp_path,
                          lambda job, slot: [sys.executable, "-c", TIMED_RUN, job.run_id, url],
                          view=view)
    scheduler.watch.left_every_s = 0.0
    assert set(scheduler.run().values()) == {"done"}
    # Nothing done: no pace yet. One done (50 s): the other two at its pace; then one left.
    assert view.lefts[0] == Left(0.0, 0, {}, {"dv2": 3})
    assert Left(100.0, 2, {"dv2": 50.0}, {}) in view.lefts
    assert Left(50.0, 1, {"dv2": 50.0}, {}) in view.lefts
    assert view.lefts[-1] == Left(0.0, 0, {"dv2": 50.0}, {})


def test_run_ladder_pins_each_run_to_one_gpu(tmp_path: Path) -> None:
    """`--gpus 0 --gpus 1 --per-gpu 2` on a machine without GPUs, taken to have two: every run
    gets its GPU's environment and `--device cuda:0`, two runs per GPU; each then fails with
    torch's one-line reason.
    `--rungs` and `--gpus` repeated add up (they once kept only the last)."""
    results, url, loc = where(tmp_path)
    done = blast("run-ladder", "--env", "minigrid:unmodified", "--rungs", "dv2",
                 "--rungs", "no_recon", "--seeds", 2, *TINY, "--gpus", "0", "--gpus", "1",
                 "--per-gpu", 2, "--max-retries", 0, "--experiment", "pin", "--no-progress",
                 "--assume-gpus", 2, *loc)
    assert done.returncode == 1, done.stderr
    runs = Store.open(url).runs("pin")
    assert len(runs) == 4
    per_gpu = {"0": 0, "1": 0}
    for run in runs:
        assert run["status"] == "failed" and "no CUDA GPU" in run["error"]
        header = (results / run["id"] / "worker.log").read_text().splitlines()[0]
        gpu = header.split("CUDA_VISIBLE_DEVICES=")[1].split()[0]
        assert f"MUJOCO_EGL_DEVICE_ID={gpu} " in header and "--device cuda:0" in header
        assert "--threads 1 " in header  # 2 cores over 4 slots, at least one
        per_gpu[gpu] += 1
    assert per_gpu == {"0": 2, "1": 2}


# --- the ladder end to end -----------------------------------------------------------------------


def test_tiny_ladder_with_a_killed_run_resume_and_resubmission(tmp_path: Path) -> None:
    results, url, _ = where(tmp_path)
    ladder_end_to_end(results, url)


def test_a_stop_checkpoints_every_run_and_marks_it_interrupted(tmp_path: Path) -> None:
    results, url, loc = where(tmp_path)
    proc = start_blast("run-ladder", "--env", ENVS[0], "--rungs", "dv2,stop_grad,bn",
                       "--seeds", 1, *tiny(1000), "--workers", 2,
                       "--experiment", "stop", "--no-progress", *loc)
    store = wait_for(lambda: (results / "blast.db").exists() and Store.open(url), what="the db")
    running = wait_for(lambda: running_with_checkpoint(store, "stop", count=2), what="2 runs")
    # Ctrl-C, then SIGTERM twice as a SLURM scancel delivers it (to the step, and forwarded by
    # srun): only a second Ctrl-C may give up waiting for the checkpoints.
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    states = {r["id"]: r for r in store.runs("stop")}
    for run in running:
        after = states.pop(run["id"])
        assert after["status"] == "interrupted", after
        assert store.checkpoints(run["id"])[-1]["step"] >= after["step"] > 0
    assert [r["status"] for r in states.values()] == ["queued"]  # never launched


def test_no_run_outlives_its_ladder(tmp_path: Path) -> None:
    # A closed terminal (SIGHUP) stops the ladder like Ctrl-C; a ladder killed outright takes its
    # run with it all the same (the kernel's parent-death signal): each time the run checkpoints
    # and ends interrupted, never running on unsupervised.
    results, url, loc = where(tmp_path)
    ladder = ["run-ladder", "--env", ENVS[0], "--rungs", "dv2", "--seeds", 1, *tiny(600),
              "--experiment", "o", "--no-progress", *loc]
    proc = start_blast(*ladder)
    store = wait_for(lambda: (results / "blast.db").exists() and Store.open(url), what="the db")
    (run,) = wait_for(lambda: running_with_checkpoint(store, "o"), what="a running run")
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    stopped = store.run(run["id"])
    assert stopped["status"] == "interrupted", stopped

    proc = start_blast(*ladder)  # resumes it
    wait_for(lambda: (r := store.run(run["id"]))["status"] == "running"
             and r["step"] > stopped["step"], what="the run resumed")
    pid = store.run(run["id"])["pid"]
    proc.kill()
    proc.communicate(timeout=60)
    after = wait_for(lambda: (r := store.run(run["id"]))["status"] != "running" and r,
                     timeout=120, what="the orphaned run to stop")
    assert after["status"] == "interrupted" and after["step"] < 600, after
    wait_for(lambda: not Path(f"/proc/{pid}").exists()
             or "zombie" in Path(f"/proc/{pid}/status").read_text(), what="its process to end")


def test_cancel_stops_a_running_run_and_the_ladder_skips_it(tmp_path: Path) -> None:
    results, url, loc = where(tmp_path)
    ladder = ["run-ladder", "--env", ENVS[0], "--rungs", "dv2", "--seeds", 1,
              *tiny(1000), "--experiment", "c", "--no-progress", *loc]
    proc = start_blast(*ladder)
    store = wait_for(lambda: (results / "blast.db").exists() and Store.open(url), what="the db")
    (run,) = wait_for(lambda: running_with_checkpoint(store, "c"), what="a running run")
    cancelled = blast("cancel", run["id"], *loc)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr
    proc.communicate(timeout=120)
    assert store.run(run["id"])["status"] == "cancelled"
    again = blast(*ladder)
    assert again.returncode == 0 and "skipped, cancelled" in again.stderr
    assert store.run(run["id"])["status"] == "cancelled"
    assert store.run(run["id"])["launches"] == 1


def test_crash_detection_by_lock_pid_and_heartbeat(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'blast.db'}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = socket.gethostname()
    cases = {  # run -> (host, pid, lock held, heartbeat age in s, expected state)
        "x/dead_pid": (here, dead.pid, None, 0, "crashed"),
        "x/lock_free": (here, os.getpid(), False, 0, "crashed"),
        "x/lock_held": (here, dead.pid, True, 0, "running"),
        "x/far_stale": ("elsewhere", 1, None, 7200, "crashed"),
        "x/far_fresh": ("elsewhere", 1, None, 60, "running"),
    }
    held = []
    for run_id, (host, pid, lock, age, _) in cases.items():
        run_dir = tmp_path / run_id
        run_dir.mkdir(parents=True)
        if lock is not None:
            fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CREAT)
            if lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held.append(fd)
        store.upsert_run(run_id, experiment="x", env="minigrid:unmodified", rung="dv2", seed=0,
                         preset="tiny", config={}, run_dir=str(run_dir))
        store.set_status(run_id, "running", pid=pid, host=host)
        beat = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
        with store._write.begin() as conn:
            conn.execute(update(Run).where(Run.id == run_id).values(heartbeat=beat))
    crashed = mark_crashed(store, "x", stale_after=1800)
    assert sorted(crashed) == sorted(k for k, v in cases.items() if v[-1] == "crashed")
    for run_id, case in cases.items():
        assert store.run(run_id)["status"] == case[-1], run_id
    assert "no heartbeat" in store.run("x/far_stale")["error"]
    for fd in held:
        os.close(fd)


def test_status_watch_follows_runs_until_none_is_queued_or_running(tmp_path: Path) -> None:
    results, url, loc = where(tmp_path)
    store = Store.open(url)
    for rung in ("dv2", "bn"):
        store.upsert_run(f"w/a__{rung}__tiny__s0", experiment="w", env="minigrid:unmodified",
                         rung=rung, seed=0, preset="tiny", config={}, run_dir=str(tmp_path))
    store.set_status("w/a__dv2__tiny__s0", "running")  # this test's process: alive
    out = tmp_path / "watch.txt"
    with out.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "blast_cli", "status", "--watch", "0.1",
                                 *loc], stdout=f, stderr=subprocess.STDOUT, env=cli_env())
    wait_for(lambda: "1 running" in out.read_text(), timeout=60, what="the first table")
    assert proc.poll() is None  # one run running and one queued: still watching
    store.set_status("w/a__dv2__tiny__s0", "done")
    wait_for(lambda: "1 done" in out.read_text(), timeout=60, what="the next table")
    store.set_status("w/a__bn__tiny__s0", "cancelled")  # nothing queued or running any more
    assert proc.wait(timeout=60) == 0
    text = out.read_text()
    assert text.count("--- ") == 3  # printed again only when it changed
    assert text.rstrip().endswith("a__tiny__s0  done  cancelled\n2 runs: 1 cancelled  1 done")


# --- recipes and bad input -----------------------------------------------------------------------


def test_shipped_recipes_load_with_the_papers_grids() -> None:
    sizes = {p.stem: recipes.load(p) for p in sorted((REPO / "recipes").glob("*.yaml"))}
    assert {k: r.size for k, r in sizes.items()} == {
        "cpu-check": 8, "figure3": 150, "figure3-cpu": 36, "figure4": 216, "figure5": 20,
        "figure8": 4}
    assert sizes["figure3"].preset == "paper" and len(sizes["figure3"].seeds) == 5
    assert sizes["figure5"].rungs == ("ar_prior", "latent_only")
    assert sizes["cpu-check"].preset == "cpu"
    assert sizes["figure3-cpu"].preset == "cpu" and sizes["figure3-cpu"].rungs == (
        "dv2", "bn", "ar_prior") and sizes["figure3-cpu"].overrides == ()
    logged = recipes.parse("experiment: x\nenvs: [minigrid:unmodified]\nlog: tensorboard\n")
    assert logged.log == ("tensorboard",) and sizes["figure3"].log == ()


def test_run_recipe_runs_the_part_its_options_choose(tmp_path: Path, capsys) -> None:
    text = (f"experiment: part\nenvs: [{ENVS[0]}, {ENVS[1]}]\nrungs: [dv2, ar_prior]\n"
            "seeds: 2\npreset: tiny\n")
    recipe = recipes.parse(text)
    part = recipes.narrow(recipe, envs=[ENVS[1]], rungs=["ar_prior"], seeds=[1])
    (chosen,) = recipes.specs(part)
    assert (chosen.env, chosen.rung, chosen.seed) == (ENVS[1], "ar_prior", 1)
    assert recipes.narrow(recipe, rungs=["ar_prior", "dv2"]).rungs == ("dv2", "ar_prior")
    assert recipes.narrow(recipe) == recipe and part.text == recipe.text  # stored as written

    path = tmp_path / "part.yaml"
    path.write_text(text)
    results, url, loc = where(tmp_path)
    store = Store.open(url)  # the chosen run is done: the command has nothing to launch
    store.upsert_run(chosen.run_id, experiment="part", env=chosen.env, rung=chosen.rung,
                     seed=1, preset="tiny", config={}, run_dir=str(results / chosen.run_id))
    store.set_status(chosen.run_id, "done")
    code, _, err = blast_here(capsys, "run-recipe", path, "--env", ENVS[1], "--rungs",
                              "ar_prior", "--seed", 1, "--no-progress", *loc)
    assert code == 0, err
    assert "part: 1 runs, 1 done, 0 to run" in err
    assert [r["id"] for r in store.runs("part")] == [chosen.run_id]
    before = dump(url)
    code, _, err = blast_here(capsys, "run-recipe", path, "--seed", "0,2", *loc)
    assert code == 2 and err == "error: --seed 2: not in the recipe's seeds (0, 1)\n"
    code, _, err = blast_here(capsys, "run-recipe", path, "--seed", "x", *loc)
    assert code == 2 and "--seed takes seeds >= 0" in err
    assert dump(url) == before


BAD_RECIPES = {
    "unknown key": ("experiment: x\nenvs: [minigrid:unmodified]\nseed: 3\n", "unknown key"),
    "unknown env": ("experiment: x\nenvs: [minigrid:nope]\n", "unknown env id"),
    "unknown rung": ("experiment: x\nenvs: [minigrid:unmodified]\nrungs: [dv2, +AR]\n",
                     "unknown rung"),
    "bad seeds": ("experiment: x\nenvs: [minigrid:unmodified]\nseeds: [1, 1]\n", "repeated"),
    "bad config key": ("experiment: x\nenvs: [minigrid:unmodified]\nset: {rssm.nope: 1}\n",
                       "unknown config key"),
    "bad preset": ("experiment: x\nenvs: [minigrid:unmodified]\npreset: huge\n", "preset"),
    "not yaml": ("experiment: [x\n", "not valid YAML"),
    "unknown log backend": ("experiment: x\nenvs: [minigrid:unmodified]\nlog: [mlflow]\n",
                            "--log mlflow: unknown backend"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_a_bad_recipe_is_one_line_and_writes_nothing(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture
) -> None:
    text, message = BAD_RECIPES[case]
    with pytest.raises(recipes.RecipeError, match=message):
        recipes.parse(text)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    results, url, loc = where(tmp_path)
    store = Store.open(url)  # an existing database with a run in it must stay as it was
    store.upsert_run("keep/r", experiment="keep", env="minigrid:unmodified", rung="dv2", seed=0,
                     preset="tiny", config={}, run_dir="/r")
    before = dump(url)
    code, _, err = blast_here(capsys, "run-recipe", path, "--no-progress", *loc)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message.lower() in err.lower()
    assert dump(url) == before


@pytest.mark.parametrize("options, message", [
    (["--gpus", "0,x"], "--gpus"),
    (["--workers", "0"], "--workers"),
    (["--gpus", "0", "--workers", "2"], "--per-gpu"),
    (["--gpus", "all", "--workers", "2"], "--per-gpu"),
    (["--executor", "submitit-local", "--cpus-per-job", "0"], "--cpus-per-job"),
    (["--executor", "submitit-local"], "--gpus-per-job 1: submitit-local runs its jobs here"),
    (["--rungs", "dv2,nope"], "unknown rung"),
    (["--seeds", "0"], "--seeds"),
    (["--set", "rssm.stoch"], "key=value"),
    # click would keep the last one without a word: 3 seeds, not the 2 asked for first
    (["--seeds", "2", "--seeds=3"], "--seeds is given twice (2, then 3)"),
])
def test_bad_options_are_one_line_and_leave_no_database(
    tmp_path: Path, options: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    results, url, loc = where(tmp_path)
    code, _, err = blast_here(capsys, "run-ladder", "--env", ENVS[0], *TINY, *options, *loc)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (results / "blast.db").exists()


def test_slurm_without_sbatch_is_one_line_and_leaves_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without SLURM's commands
    results, url, loc = where(tmp_path)
    code, _, err = blast_here(capsys, "run-ladder", "--env", ENVS[0], *TINY, "--executor",
                              "slurm", "--gpus-per-job", "1", *loc)
    assert code == 2, err
    assert err == "error: --executor slurm: no sbatch on this machine (submit from a login node)\n"
    assert not (results / "blast.db").exists()


@pytest.mark.parametrize("command", [["status"], ["status", "--watch", "1"], ["ls"],
                                     ["cancel", "x/y"], ["resume", "--all"]])
def test_commands_that_read_runs_never_create_a_database(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture
) -> None:
    # Asked in the wrong folder, they say so instead of creating an empty results/blast.db.
    results, _, _ = where(tmp_path)
    code, _, err = blast_here(capsys, *command, "--results", results)
    assert code == 2 and err == f"error: no run database at {results / 'blast.db'}: run " \
        "something first, or point --results / --db at one\n", err
    assert not results.exists()


# --- SLURM's path through submitit's local executor ----------------------------------------------


def test_submitit_local_executor_takes_a_tiny_run_to_done_and_shows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SLURM path's jobs through submitit's local executor; while it waits, the view shows
    the run (its slot: its job) and the time left."""
    from blast_core.scheduling import slurm
    from blast_core.scheduling.eta import Left
    from blast_core.scheduling.execution import SlurmOptions

    monkeypatch.setattr(slurm, "POLL_S", 0.2)
    results, url, _ = where(tmp_path)
    (spec,) = grid([ENVS[0]], ["ar_prior"], [0], "tiny", "sub", 150,
                   ["schedule.prefill=100", "schedule.eval_every=150",
                    "schedule.checkpoint_every=50"])
    store = Store.open(url)
    jobs = plan(store, [spec], results).jobs
    view = Recording()
    ex = Execution(results, url, executor="submitit-local",
                   slurm=SlurmOptions(gpus_per_job=0, cpus_per_job=1))
    outcome = slurm.submit(store, jobs, ex, view)
    assert outcome.states == {jobs[0].run_id: "done"}
    assert any(e.startswith("submitted 1 job(s)") for e in view.events)
    (run,) = store.runs("sub")
    assert run["step"] == 150 and run["launches"] == 1
    assert "OMP_NUM_THREADS=1" in (Path(run["run_dir"]) / "worker.log").read_text()
    assert view.lefts[0] == Left(0.0, 0, {}, {"ar_prior": 1})  # no done run to pace it yet
    assert {run["id"]: "job"} in view.wheres  # shown while it ran
    assert view.lefts[-1].runs == 0 and set(view.lefts[-1].per_run) == {"ar_prior"}


def test_a_preempted_submitit_job_is_requeued_and_its_run_resumes(tmp_path: Path) -> None:
    import submitit

    from blast_core.scheduling.slurm import RunPack

    results, url, _ = where(tmp_path)
    (spec,) = grid([ENVS[0]], ["dv2"], [0], "tiny", "pre", 300,
                   ["schedule.prefill=100", "schedule.checkpoint_every=50",
                    "schedule.eval_every=300"])
    store = Store.open(url)
    jobs = plan(store, [spec], results).jobs  # creates the run as queued
    executor = submitit.LocalExecutor(folder=tmp_path / "slurm")
    executor.update_parameters(timeout_min=30, signal_delay_s=60)
    job = executor.submit(RunPack(jobs, str(results), url, Placement(workers=1), 0, 1))
    (run,) = wait_for(lambda: job.done() or running_with_checkpoint(store, "pre"),
                      what="a checkpoint")
    # SLURM's preemption warning goes to the job's process: the parent of the run's process.
    os.kill(parent(run["pid"]), signal.SIGUSR2)
    assert job.result() == {run["id"]: "done"}
    after = store.run(run["id"])
    assert after["step"] == 300 and after["launches"] == 2
    log = (results / run["id"] / "worker.log").read_text()
    assert log.count("=== ") == 2 and "interrupted by signal" in log
    frame = store.metrics_frame("pre")
    assert not frame.duplicated(["run_id", "name", "step"]).any()


def test_status_groups_rows_by_options_and_says_what_each_hash_stands_for(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'blast.db'}")
    specs = [RunSpec.make("minigrid:unmodified", "ar_prior", seed, "tiny", sets, steps, "opts")
             for sets, steps in [([], None), (["rssm.ar_net=made", "kl.free=0.5"], 300)]
             for seed in (10, 2)]
    for spec in specs:
        store.upsert_run(spec.run_id, experiment="opts", env=spec.env, rung=spec.rung,
                         seed=spec.seed, preset=spec.preset, config={}, run_dir=str(tmp_path),
                         overrides=spec.override_dict(), steps=spec.steps)
    (name, table, footer), = S.status_tables(store, "opts")
    console = Console(width=200, record=True)
    console.print(table, footer)
    lines = console.export_text().splitlines()
    plain, hashed = specs[1].name, specs[3].name  # seed 2 of each
    hash_ = hashed.rpartition("__")[2]
    rows = [line.split()[0] for line in lines[1:5]]
    assert rows == [n.replace("__ar_prior__", "__") for n in
                    (plain, specs[0].name, hashed, specs[2].name)]  # s2 before s10, per options
    assert lines[-2:] == ["options: ", f"  {hash_}  --steps 300 --set kl.free=0.5 "
                          "--set rssm.ar_net=made"]


def test_status_says_the_run_time_left_from_the_time_done_runs_took(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'blast.db'}")
    schedule = {"schedule": {"steps": 3000, "prefill": 1000}}  # 2000 training steps a run
    cases = [("dv2", 0, "done", 3000, 4000.0), ("dv2", 1, "done", 3000, 6000.0),
             ("dv2", 2, "interrupted", 2000, None), ("dv2", 3, "running", 2600, None),
             ("dv2", 4, "queued", 0, None), ("bn", 0, "queued", 0, None),
             ("bn", 1, "failed", 1500, None)]
    for rung, seed, state, step, spent in cases:
        spec = RunSpec.make(ENVS[0], rung, seed, "tiny", experiment="eta")
        store.upsert_run(spec.run_id, experiment="eta", env=spec.env, rung=rung, seed=seed,
                         preset="tiny", config=schedule, run_dir=str(tmp_path))
        store.set_status(spec.run_id, state)
        for at in (2000, 3000) if spent else ():  # the loop's phases add up to the run's time
            store.append_metrics(spec.run_id, [(at, at, name, spent * share / 2) for name, share
                                               in (("time_update_s", 0.9), ("time_env_s", 0.1))])
            if seed == 0 and at == 2000:  # stopped past its checkpoint at 2000, then resumed:
                store.append_metrics(spec.run_id, [(2500, 2500, "time_update_s", 9e9)])
                store.truncate_metrics(spec.run_id, 2000)  # the resume drops the rows after it
        if state == "running":  # its speed windows: the one ending at the prefill pretrained
            store.append_metrics(spec.run_id, [(at, at, "steps_per_s", v) for at, v in
                                               ((1000, 0.01), (2200, 0.5), (2400, 1.0),
                                                (2600, 0.5))])
        store.heartbeat(spec.run_id, step)
    (_, table, footer), = S.status_tables(store, "eta")
    # Paces 2 and 3 s a training step (median 2.5): the interrupted run 1000 steps x 2.5, the
    # running one 400 steps at its own recent pace (600 steps in 1000 s: 0.6 a second, where
    # its last window alone says 0.5), the queued dv2 run 2000 x 2.5: 8167 s.
    assert footer.plain.splitlines()[1] == (
        "left: ~2h16m of run time for 3 runs (a done run took: dv2 1h23m); "
        "not yet timed (no done run of the rung): 2 bn")  # a failed run is run again
    console = Console(width=200, record=True)
    console.print(table)
    assert "running 87% ~11m left" in console.export_text()
    for seed in (0, 1):
        store.set_status(RunSpec.make(ENVS[0], "bn", seed, "tiny", experiment="eta").run_id,
                         "cancelled")
    for seed in (2, 3, 4):
        store.set_status(RunSpec.make(ENVS[0], "dv2", seed, "tiny", experiment="eta").run_id,
                         "done")
    (_, _, footer), = S.status_tables(store, "eta")
    assert "left:" not in footer.plain  # nothing left to run


def test_status_legend_puts_the_options_every_hash_shares_first(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'blast.db'}")
    groups = [["rssm.ar_net=made", "kl.free=0.5"], ["rssm.ar_net=made"], ["kl.free=0.5"]]
    specs = [RunSpec.make("minigrid:unmodified", "bn", 0, "tiny", sets, 300, "share")
             for sets in groups]
    for spec in specs:
        store.upsert_run(spec.run_id, experiment="share", env=spec.env, rung=spec.rung,
                         seed=spec.seed, preset=spec.preset, config={}, run_dir=str(tmp_path),
                         overrides=spec.override_dict(), steps=spec.steps)
    runs = store.runs("share")
    hashes = [spec.name.rpartition("__")[2] for spec in specs]
    legend = S.options_legend(runs).plain.splitlines()
    assert legend[:2] == ["options: ", "  all       --steps 300"]
    assert sorted(legend[2:]) == sorted([
        f"  {hashes[0]}  --set kl.free=0.5 --set rssm.ar_net=made",
        f"  {hashes[1]}  --set rssm.ar_net=made", f"  {hashes[2]}  --set kl.free=0.5"])
    # Two hashes sharing every option of one: that one's line is "-".
    both = S.options_legend([r for r in runs if r["overrides"] != {"kl.free": "0.5"}])
    lines = both.plain.splitlines()
    assert lines[1] == "  all       --steps 300 --set rssm.ar_net=made"
    assert f"  {hashes[1]}  -" in lines and f"  {hashes[0]}  --set kl.free=0.5" in lines


def test_status_says_why_each_failed_or_crashed_run_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'blast.db'}"
    store = Store.open(url)
    ends = [("failed", "ConfigError: rssm.stoch=-1 is out of range\nTraceback ..."),
            ("crashed", "crashed: process exited with signal SIGKILL"), ("done", None)]
    for seed, (state, error) in enumerate(ends):
        spec = RunSpec.make(ENVS[0], "dv2", seed, "tiny", experiment="why")
        store.upsert_run(spec.run_id, experiment="why", env=spec.env, rung=spec.rung,
                         seed=seed, preset="tiny", config={}, run_dir=str(tmp_path))
        store.set_status(spec.run_id, state, error=error)
    code, out, _ = blast_here(capsys, "status", "--experiment", "why", "--db", url)
    assert code == 0
    assert out.splitlines()[-3:] == [
        "why: ",
        "  minigrid.unmodified__dv2__tiny__s0  failed: ConfigError: rssm.stoch=-1 is out of range",
        "  minigrid.unmodified__dv2__tiny__s1  crashed: process exited with signal SIGKILL"]


def test_every_run_the_scheduler_queues_is_resumable_by_id_before_any_worker_starts(
    tmp_path: Path,
) -> None:
    # Ctrl-C can kill a worker before it writes anything: the queued run must still have its
    # run.json and config.yaml, which `blast resume RUN` (and resume --all) start from.
    from blast_core.run.spec import load_spec

    results, url, _ = where(tmp_path)
    results.mkdir()
    store = Store.open(url)
    specs = grid(ENVS, ["dv2", "bn"], [0], "tiny", "race", 300)
    todo = plan(store, specs, results, log=["tensorboard"])
    assert [job.run_id for job in todo.jobs] == [s.run_id for s in specs]
    for spec in specs:
        assert store.run(spec.run_id)["status"] == "queued"
        loaded, cfg = load_spec(results, spec.run_id)
        assert loaded == spec and cfg == spec.config()
        # `--log` of run-ladder: the worker's plain `blast run` finds it with the run.
        assert (results / spec.run_id / "log.json").read_text() == '["tensorboard"]\n'
    again = plan(store, specs, results)  # a second plan finds the same files and keeps them
    assert len(again.jobs) == len(specs)
