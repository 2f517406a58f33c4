"""Host memory: a run's estimate against a real run's replay, packing to fit, SLURM's request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ladder_helpers import ENVS, TINY, blast

from blast_core import config as C
from blast_core.config import tree as T
from blast_core.run.checkpoint import weights_mib
from blast_core.scheduling import Execution, Placement, placement
from blast_core.scheduling import disk as D
from blast_core.scheduling import memory as M
from blast_core.scheduling.execution import SlurmOptions
from blast_core.scheduling.slurm import job_mem_mib
from blast_core.store import Store


def config(env: str, preset: str = "paper", **overrides) -> dict:
    return T.to_dict(C.make_config(env, "bn", preset, overrides))


def test_estimate_holds_a_real_runs_replay(tmp_path: Path) -> None:
    results = tmp_path / "results"
    url = f"sqlite:///{results / 'blast.db'}"
    done = blast("run-ladder", "--env", ENVS[0], "--rungs", "dv2", *TINY, "--workers", 1,
                 "--mem-per-run", 4096, "--experiment", "mem", "--no-progress",
                 "--results", results, "--db", url)
    assert done.returncode == 0, done.stderr
    # 4 TiB per run: a count the user gave is kept, with a warning.
    assert "warning: 1 runs at once x ~4096.0 GiB of host memory per run" in done.stderr
    (run,) = Store.open(url).runs("mem")
    files = sorted((Path(run["run_dir"]) / "replay").glob("*.npz"))
    entries = bytes_ = 0
    for file in files:
        with np.load(file) as episode:
            entries += len(episode["image"])
            bytes_ += sum(episode[k].nbytes for k in episode.files)
    assert files and entries >= 100
    frame = run["config"]["env"]["size"] ** 2 * 3
    assert frame < bytes_ / entries <= frame + M.STEP_EXTRA_BYTES
    # min(capacity, 150 steps) x 12 KiB of replay; tiny: batch 4 x length 8 x depth 4
    assert M.run_mib(run["config"]) == M.CPU_BASE_MIB + 14 + 2
    # Disk: a checkpoint holds the weights and Adam's moments, counted from the agent, and less
    # than two whole episodes; all the files are under the estimate.
    checkpoints = sorted((Path(run["run_dir"]) / "checkpoints").glob("*.pt"))
    size = checkpoints[-1].stat().st_size / 2**20
    assert weights_mib(run["config"]) < size < D.checkpoint_mib(run["config"])
    written = sum(f.stat().st_size for f in [*files, *checkpoints]) / 2**20
    assert written <= D.run_disk_mib(run["config"])


@pytest.mark.parametrize("env", ["minigrid:unmodified", "dmc:walker_walk"])
def test_weights_estimate_is_the_size_of_a_saved_agent(tmp_path: Path, env: str) -> None:
    import torch

    from blast_core.agent import Agent
    from blast_core.bench.models import FAMILY_ENVS, synthetic_batch

    cfg = C.make_config(env, "ar_prior", "tiny")
    act = FAMILY_ENVS[cfg.env.family][1]
    agent = Agent(cfg, act)
    agent.update(synthetic_batch(cfg, act))  # Adam's moments exist after a step
    torch.save(agent.checkpoint_state(), tmp_path / "agent.pt")
    size = (tmp_path / "agent.pt").stat().st_size / 2**20
    assert weights_mib(T.to_dict(cfg)) == pytest.approx(size, rel=0.05)


def test_disk_warning_when_the_runs_may_not_fit(tmp_path: Path) -> None:
    held, mapped = (config("dmc:walker_walk", **{"replay.mmap": m}) for m in (False, True))
    one, one_mapped = D.run_disk_mib(held), D.run_disk_mib(mapped)
    replay = M.replay_mib(held)  # ~11.5 GiB of frames: ~3.5 GiB compressed, all of it mapped
    assert one_mapped - one == pytest.approx(replay * (1 - D.STORED_FRACTION["dmc"]), abs=1)
    assert D.free_mib(tmp_path / "not" / "yet") == D.free_mib(tmp_path) > 0
    assert D.check(tmp_path, [held] * 4, free=4 * one) is None
    note = D.check(tmp_path, [held] * 4, free=4 * one - 1)
    assert note.startswith("warning: 4 runs may write up to ~") and "uncompressed" not in note
    assert "replay.mmap stores frames uncompressed" in D.check(tmp_path, [mapped], free=one)
    assert D.check(tmp_path, [], free=0) is None
    # A config from a newer blast (a key this one lacks): its replay alone is counted.
    newer = {**held, "future_key": 1}
    assert D.run_disk_mib(newer) == round(replay * D.STORED_FRACTION["dmc"])


def test_paper_sizes_replay_dominates_dmc() -> None:
    minigrid, dmc = config("minigrid:unmodified"), config("dmc:walker_walk")
    base = M.CPU_BASE_MIB + M.CPU_UPDATE_MIB  # the paper's batch, length and depth
    assert M.run_mib(minigrid) == base + np.ceil(50_000 * (12_288 + 64) / 2**20)
    assert M.run_mib(dmc) - base == pytest.approx(11.5 * 1024, rel=0.01)
    assert M.run_mib(dmc, gpu=True) - M.run_mib(dmc) == M.GPU_BASE_MIB - base
    small = config("dmc:walker_walk", **{"replay.capacity": 100_000})
    assert M.run_mib(small) - base == pytest.approx(1178, abs=1)
    cpu_preset = config("minigrid:unmodified", "cpu")  # 8 x 16 x 16: 1/19 of the activations
    steps = cpu_preset["schedule"]["steps"]  # the replay holds every step of a run this short
    assert M.run_mib(cpu_preset) == M.CPU_BASE_MIB + 219 + np.ceil(steps * 12_352 / 2**20)


def test_auto_counts_are_lowered_to_fit_and_given_ones_warned_about() -> None:
    dmc = [config("dmc:walker_walk"), config("minigrid:unmodified")]  # sized by the larger
    need = M.run_mib(dmc[0], gpu=True)
    gpus = placement(None, None, None, visible=8, cpus=64, gpu_mib=80_000)
    assert gpus.per_gpu == 4 and gpus.auto
    fitted, note = M.fit(gpus, dmc, available=20 * need)  # 32 runs wanted, 20 fit
    assert fitted.per_gpu == 2 and fitted.gpus == gpus.gpus
    assert note.startswith("memory: ~14.0 GiB") and note.endswith(
        "16 runs at once instead of 32; --set replay.mmap=true maps replays from disk")
    fitted, note = M.fit(gpus, dmc, available=4 * need)  # fewer than one per GPU
    assert fitted.per_gpu == 1 and note.startswith("warning: 8 runs at once")
    given = placement(None, 4, None, visible=8, cpus=64)
    fitted, note = M.fit(given, dmc, available=20 * need)
    assert fitted == given and "; 20 fit: lower --per-gpu or --workers" in note
    workers = placement(None, None, None, visible=0, cpus=16)
    assert M.fit(workers, dmc, available=3 * M.run_mib(dmc[0]))[0].workers == 3
    # Replays mapped from disk: only the rest of each run is counted, and all 32 fit.
    mapped = [config("dmc:walker_walk", **{"replay.mmap": True})]
    assert M.run_mib(mapped[0], gpu=True) == M.GPU_BASE_MIB
    assert M.fit(gpus, mapped, available=20 * need) == (gpus, None)
    fitted, note = M.fit(gpus, mapped, available=8 * M.GPU_BASE_MIB)
    assert fitted.per_gpu == 1 and "replay.mmap" not in note and "held in memory" not in note
    # Enough memory, nothing known, or a user's own per-run figure.
    assert M.fit(gpus, dmc, available=32 * need) == (gpus, None)
    assert M.fit(gpus, dmc, available=None) == (gpus, None)
    assert M.fit(gpus, dmc, available=32 * 1024, per_run=1024) == (gpus, None)


def test_available_memory_reads_meminfo_and_the_cgroups_above_this_process(
        tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65536000 kB\nMemAvailable:   32768000 kB\n")
    root, own = tmp_path / "cgroup", tmp_path / "self_cgroup"
    step = root / "slurm" / "job_7" / "step_0"  # cgroup v2: a SLURM step inside its job
    step.mkdir(parents=True)
    own.write_text("not a cgroup line\n0::/slurm/job_7/step_0\n")
    assert M.available_mib(meminfo, root, own) == 32_000
    (step / "memory.max").write_text("max\n")  # the step has no cap of its own
    assert M.available_mib(meminfo, root, own) == 32_000
    (step.parent / "memory.max").write_text(f"{16 * 2**30}\n")  # the job's 16 GiB
    (step.parent / "memory.current").write_text(f"{2**30}\n")
    assert M.available_mib(meminfo, root, own) == 15 * 1024
    v1 = root / "memory" / "docker" / "c1"  # cgroup v1: a container's cap
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{8 * 2**30}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2 * 2**30}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # no limit
    own.write_text("4:memory:/docker/c1\n1:cpu:/docker/c1\n")
    assert M.available_mib(meminfo, root, own) == 6 * 1024
    assert M.available_mib(tmp_path / "none", root, tmp_path / "none") is None
    assert M.available_mib() > 0  # this machine


def test_slurm_asks_for_the_memory_of_the_runs_a_job_holds_at_once() -> None:
    configs = [config("dmc:walker_walk")]
    ex = Execution(Path("r"), "postgresql://x", Placement((), per_gpu=4), executor="slurm")
    opts = SlurmOptions(gpus_per_job=2)
    assert job_mem_mib(ex, opts, configs, per_job=8) == 8 * M.run_mib(configs[0], gpu=True)
    assert job_mem_mib(ex, opts, configs, per_job=3) == 3 * M.run_mib(configs[0], gpu=True)
    cpu = SlurmOptions(gpus_per_job=0, runs_per_job=5)
    assert job_mem_mib(ex, cpu, configs, per_job=5) == 5 * M.run_mib(configs[0])
    given = Execution(Path("r"), "postgresql://x", Placement((), per_gpu=4), mem_per_run=2048)
    assert job_mem_mib(given, opts, configs, per_job=8) == 8 * 2048
