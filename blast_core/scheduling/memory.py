"""Host memory: what one run holds, and how many runs this machine (or SLURM job) holds at once.

A run keeps its whole replay in memory (blast_core/run/replay.py): every stored step is a (size,
size, 3) uint8 frame and a few floats, and it stores min(replay.capacity, schedule.steps) of
them. At the paper's sizes that is ~0.6 GiB for MiniGrid (50,000 steps) and ~11.5 GiB for DMC
(1e6 steps): four DMC runs per GPU on an 8-GPU node want ~460 GiB of host memory. The rest of a
run (Python, torch, the model, the environment, the update's activations on a CPU; the CUDA
libraries on a GPU) is estimated from measured runs below. A count of runs blast chose itself is
lowered to what fits; a count the user gave is kept, with a warning. `--mem-per-run` replaces
the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from blast_core.scheduling.slots import Placement

GPU_BASE_MIB = 2560
"""Host memory of a GPU run besides its replay: Python, torch, the CUDA libraries and context.
A paper-size MiniGrid ar_prior run with CUDA graphs held 1924 MiB (`host_mem_mb`, H100, torch
2.11, a replay of 18 MiB) through 500 updates and an evaluation; the rest is room for DMC's
MuJoCo and renderer, not measured on a GPU."""
CPU_BASE_MIB = 512
"""Host memory of a CPU run besides its replay and its update's activations (a `tiny` run holds
~0.35 GiB)."""
CPU_UPDATE_MIB = 4096
"""A paper-size update's activations on a CPU, with ~10 % to spare, scaled to other sizes by
batch x length x CNN depth: a paper-size DMC ar_prior run held 4038 MiB from its 20th update to
its 60th and 4123 MiB after 80 and an evaluation (`host_mem_mb`), a `cpu`-preset run ~0.5 GiB
besides its replay."""
STEP_EXTRA_BYTES = 64
"""A stored step besides its frame: action (float32 per action dimension), reward and flags."""


def run_mib(config: Mapping[str, Any], gpu: bool = False) -> int:
    """Host memory of one run (MiB) from its resolved config (the store's dict), on a GPU or a
    CPU worker."""
    replay = 0 if config["replay"].get("mmap") else replay_mib(config)
    if gpu:
        return GPU_BASE_MIB + replay
    scale = (config["dataset"]["batch"] * config["dataset"]["length"]
             * config["encoder"]["depth"]) / (16 * 50 * 48)  # the paper's sizes
    return CPU_BASE_MIB + math.ceil(CPU_UPDATE_MIB * scale) + replay


def replay_mib(config: Mapping[str, Any]) -> int:
    """A run's replay held in memory (MiB). With `replay.mmap` the frames are in the page cache
    instead, which the kernel reclaims under pressure, so `run_mib` leaves them out."""
    steps = min(int(config["replay"]["capacity"]), int(config["schedule"]["steps"]))
    frame = int(config["env"]["size"]) ** 2 * 3
    return math.ceil(steps * (frame + STEP_EXTRA_BYTES) / 2**20)


def available_mib(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup"),
                  own: Path = Path("/proc/self/cgroup")) -> int | None:
    """Memory this process may still use (MiB): the kernel's MemAvailable, or less when a cgroup
    of this process or one above it (a SLURM job, a container) caps it. None when unknown."""
    found = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        lines = own.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:  # "0::/path" (v2) or "4:memory:/path" (v1)
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, limit, usage = cgroup, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            base, limit, usage = cgroup / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        leaf = base / path.lstrip("/")
        for folder in [leaf, *leaf.parents[:len(leaf.parents) - len(base.parents)]]:
            try:
                cap = (folder / limit).read_text().strip()
                if cap.isdigit() and int(cap) < 2**60:  # v1 writes "no limit" as ~2**63
                    found.append((int(cap) - int((folder / usage).read_text())) // 2**20)
            except (OSError, ValueError):
                continue
    return min(found) if found else None


def fit(place: Placement, configs: Iterable[Mapping[str, Any]], available: int | None,
        per_run: int | None = None) -> tuple[Placement, str | None]:
    """The placement with no more runs at once than `available` MiB holds (lowered only when
    blast chose the count: `place.auto`), and a line to show (None when it all fits or nothing
    is known). Runs are sized by the largest of `configs`, or by `per_run` MiB when given."""
    configs = [c for c in configs if c]
    need = per_run or max((run_mib(c, bool(place.gpus)) for c in configs), default=0)
    if not need or available is None or place.size * need <= available:
        return place, None
    fits = available // need
    fitted = place
    if place.auto and place.gpus:
        fitted = replace(place, per_gpu=max(1, min(place.per_gpu, fits // len(place.gpus))))
    elif place.auto:
        fitted = replace(place, workers=max(1, min(place.workers, fits)))
    held = [c for c in configs if not c["replay"].get("mmap")]
    replay = max((replay_mib(c) for c in held), default=0)
    held_in = " (its replay is held in memory)" if replay else ""
    what = (f"~{need / 1024:.1f} GiB of host memory per run{held_in}, "
            f"{available / 1024:.1f} GiB available")
    # A replay that is most of a run's memory can live in the page cache instead.
    hint = "; --set replay.mmap=true maps replays from disk" if 2 * replay > need else ""
    if fitted.size * need <= available:
        return fitted, (f"memory: {what}: {fitted.size} runs at once instead of {place.size}"
                        f"{hint}")
    advice = f"; {fits} fit: lower --per-gpu or --workers" if fits and not place.auto else ""
    return fitted, (f"warning: {fitted.size} runs at once x {what}: runs may be killed for "
                    f"memory{advice}{hint} (--mem-per-run GiB if the estimate is wrong)")
