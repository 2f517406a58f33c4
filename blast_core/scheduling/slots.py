"""Where runs execute on one machine: K runs packed per GPU, or N CPU workers.

A slot is one place a run can hold. Each run's process gets its slot's environment: GPU runs see
exactly one GPU (CUDA_VISIBLE_DEVICES, so `--device cuda:0` inside) and render MuJoCo on it
(MUJOCO_EGL_DEVICE_ID); CPU workers see no GPU. The machine's cores are split evenly among slots
unless `--threads` sets each run's count.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from blast_core.errors import BlastError


class PlacementError(BlastError):
    """Bad --gpus, --per-gpu, --workers or --threads."""


@dataclass(frozen=True)
class Placement:
    """How many runs this machine holds at once, and on what."""

    gpus: tuple[int, ...] = ()
    """GPU indices (as this process sees them); empty: CPU workers."""
    per_gpu: int = 1
    """Runs packed on each GPU at once."""
    workers: int = 1
    """Concurrent CPU runs when there are no GPUs."""
    threads: int | None = None
    """Torch CPU threads per run; None splits the machine's cores evenly among the slots (set it
    lower when other work shares the machine: oversubscribed OpenMP threads spin)."""
    auto: bool = field(default=False, compare=False)
    """The run count was blast's default, not the user's: it may be lowered to fit memory."""

    @property
    def size(self) -> int:
        return len(self.gpus) * self.per_gpu if self.gpus else self.workers


@dataclass(frozen=True)
class Slot:
    index: int
    gpu: int | None
    """Index among the GPUs this process sees; None for a CPU worker."""
    threads: int
    """Torch CPU threads of the run in this slot."""

    @property
    def device(self) -> str:
        return "cpu" if self.gpu is None else "cuda:0"  # the run sees only its own GPU

    @property
    def label(self) -> str:
        return f"cpu{self.index}" if self.gpu is None else f"gpu{self.gpu}"


AUTO_PER_GPU = 4
"""Runs packed on each GPU when --per-gpu is not given (fewer when the cores run out): four
paper-size MiniGrid runs with CUDA graphs did 16.7 updates/s together on an H100 against 13.3
for one alone, and 11.5 for four eager ones (docs/benchmarks.md)."""
RUN_GPU_MIB = 4 * 1024
"""GPU memory a run is given when packing by default: a paper-size MiniGrid ar_prior run with
CUDA graphs reserved 3028 MiB (`peak_mem_mb`, H100), plus the CUDA context. An 8 GiB GPU then
takes 2 runs; K is capped, never raised, by it."""


def parse_gpus(text: str | None) -> tuple[int, ...] | None:
    """`"0,1"` -> (0, 1); "none" or "cpu" -> (); None or "all" -> None (every visible GPU)."""
    if text is None or text.strip().lower() == "all":
        return None
    if text.strip().lower() in ("", "none", "cpu"):
        return ()
    try:
        gpus = tuple(int(g) for g in text.split(","))
    except ValueError:
        raise PlacementError(
            f"--gpus expects indices like 0,1, all or none, got {text!r}") from None
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise PlacementError(f"--gpus expects distinct indices >= 0, got {text!r}")
    return gpus


def visible_gpus() -> int:
    """CUDA GPUs this process sees (CUDA_VISIBLE_DEVICES applies; 0 with a CPU build of torch)."""
    import torch  # here: the CLI's other commands start without it

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def smallest_gpu_mib() -> int | None:
    """Memory of this machine's smallest GPU in MiB (nvidia-smi); None when it cannot be asked.
    Asked without CUDA, so that the scheduler holds no CUDA context on any GPU."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return min(int(float(x)) for x in out.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def placement(gpus: str | None, per_gpu: int | None, workers: int | None,
              threads: int | None = None, *, visible: int | None = None,
              cpus: int | None = None, gpu_mib: int | None = None) -> Placement:
    """Validate the scheduling options into a Placement (a one-line error on bad input).

    Without --gpus and --workers every GPU this process sees is used, AUTO_PER_GPU runs on each
    (at most one run per core and per RUN_GPU_MIB of the smallest GPU); with no GPU, or
    --workers, or --gpus none, runs go to CPU workers (default: one per two cores). `visible`,
    `cpus` and `gpu_mib` stand for the machine's counts (by default they are asked)."""
    cpus = cpus or os.cpu_count() or 1
    parsed = parse_gpus(gpus)
    if per_gpu is not None and per_gpu < 1:
        raise PlacementError(f"--per-gpu must be >= 1, got {per_gpu}")
    if workers is not None and workers < 1:
        raise PlacementError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise PlacementError(f"--threads must be >= 1, got {threads}")
    if workers is not None and (parsed or (gpus is not None and parsed is None)):
        raise PlacementError("--workers is for CPU runs; with --gpus use --per-gpu")
    if parsed is None:
        seen = 0 if workers is not None else visible_gpus() if visible is None else visible
        if gpus is not None and not seen:  # `--gpus all`, where the default would go to CPUs
            raise PlacementError("--gpus all: torch sees no GPU here; leave --gpus out (or "
                                 "give --workers N) for CPU workers")
        parsed = tuple(range(seen))
    elif parsed:
        seen = visible_gpus() if visible is None else visible
        missing = [g for g in parsed if g >= seen]
        if missing:  # a typo or the wrong machine: every run placed there would fail on start
            raise PlacementError(
                f"--gpus names GPU {','.join(map(str, missing))} but torch sees {seen} GPU"
                f"{'' if seen == 1 else 's'} here"
                + (f" (0 to {seen - 1})" if seen > 1 else " (0)" if seen else
                   ": leave --gpus out for CPU workers"))
    if not parsed:
        return Placement((), per_gpu or 1, workers or max(1, cpus // 2), threads,
                         auto=workers is None)
    auto = per_gpu is None
    if per_gpu is None:
        mib = gpu_mib or smallest_gpu_mib()
        per_gpu = max(1, min(AUTO_PER_GPU, cpus // len(parsed),
                             mib // RUN_GPU_MIB if mib else AUTO_PER_GPU))
    return Placement(parsed, per_gpu, 1, threads, auto=auto)


def describe(slots: list[Slot]) -> str:
    """One line for the start of a command: where its runs go."""
    threads = sorted({s.threads for s in slots})
    each = f"{'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''} per run"
    gpus = sorted({s.gpu for s in slots if s.gpu is not None})
    if not gpus:
        return f"{len(slots)} CPU worker{'s' if len(slots) > 1 else ''}, {each}, no GPU"
    per = len(slots) // len(gpus)
    return (f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({','.join(map(str, gpus))}) x "
            f"{per} run{'s' if per > 1 else ''} each, {each}")


def plan_slots(place: Placement, cpus: int | None = None) -> list[Slot]:
    """The slots of a placement; GPUs are interleaved so that the first runs spread over GPUs."""
    cpus = cpus or os.cpu_count() or 1
    threads = place.threads or max(1, cpus // place.size)
    if not place.gpus:
        return [Slot(i, None, threads) for i in range(place.workers)]
    order = [g for _ in range(place.per_gpu) for g in place.gpus]
    return [Slot(i, g, threads) for i, g in enumerate(order)]


def slot_env(slot: Slot, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run's process in `slot` (a copy of `base`, default os.environ)."""
    env = dict(os.environ if base is None else base)
    threads = str(slot.threads)
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    if slot.gpu is None:
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env
    # Inside a SLURM allocation (or under a user's own CUDA_VISIBLE_DEVICES) the indices the
    # scheduler counts are positions in that list, so map them to what it names.
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    physical = visible[slot.gpu] if slot.gpu < len(visible) else str(slot.gpu)
    env["CUDA_VISIBLE_DEVICES"] = physical
    # EGL enumerates devices itself, ignoring CUDA_VISIBLE_DEVICES; mujoco#461 reports that some
    # MuJoCo versions ignore this too and render on GPU 0 (docs/experiments.md).
    env["MUJOCO_EGL_DEVICE_ID"] = physical if physical.isdigit() else str(slot.gpu)
    return env
