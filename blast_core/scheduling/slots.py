"""Where runs execute on one machine: K runs packed per GPU, or N CPU workers.

A slot is one place a run can hold. Each run's process gets its slot's environment: GPU runs see
exactly one GPU (CUDA_VISIBLE_DEVICES, so `--device cuda:0` inside) and render MuJoCo on it
(MUJOCO_EGL_DEVICE_ID); CPU workers see no GPU. The machine's cores are split evenly among slots
unless `--threads` sets each run's count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """`"0,1"` -> (0, 1); None or "" -> ()."""
    if not text:
        return ()
    try:
        gpus = tuple(int(g) for g in text.split(","))
    except ValueError:
        raise PlacementError(f"--gpus expects indices like 0,1, got {text!r}") from None
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise PlacementError(f"--gpus expects distinct indices >= 0, got {text!r}")
    return gpus


def placement(gpus: str | None, per_gpu: int, workers: int | None,
              threads: int | None = None) -> Placement:
    """Validate the scheduling options into a Placement (a one-line error on bad input)."""
    parsed = parse_gpus(gpus)
    if per_gpu < 1:
        raise PlacementError(f"--per-gpu must be >= 1, got {per_gpu}")
    if workers is not None and workers < 1:
        raise PlacementError(f"--workers must be >= 1, got {workers}")
    if parsed and workers is not None:
        raise PlacementError("--workers is for CPU runs; with --gpus use --per-gpu")
    if threads is not None and threads < 1:
        raise PlacementError(f"--threads must be >= 1, got {threads}")
    return Placement(parsed, per_gpu, workers or 1, threads)


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
