"""How the update's arithmetic runs: fp32 or bf16 autocast, and how the process gets its memory.

The agent's fast kernels (NHWC convolutions, one-hot gathers, the batched AR prior and posterior
chain) compute what the plain layers compute, only summing in another order; the plain versions
are the test oracles (`tests/oracles.py`), and `tests/test_fast_path.py` compares a whole update
both ways.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from contextlib import AbstractContextManager

import torch


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward passes' context for `Config.precision`: under bf16, torch's autocast runs
    matmuls and convolutions in bf16. It leaves the rest in the dtype it is given, so the agent
    casts back to fp32 where precision matters (the GRU's LayerNorm and state, BatchNorm, every
    distribution, the KL and the heads' outputs). Backward passes run outside it, as torch asks."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 2**31 - 1


def keep_freed_memory(enabled: bool = True) -> bool:
    """Let the process keep and reuse the memory its tensors free, instead of giving it back to
    the kernel after each large tensor (glibc's default above 32 MiB, and its heap trimming).

    One paper-size update allocates and frees about 2 GB in tensors of tens of MB (activations
    of 800 frames); by default each is a fresh mmap, so every page is faulted in and zeroed by
    the kernel again: ~500k page faults and 2.1 s of system time per 12 s MiniGrid update on
    one CPU thread. Kept, the update runs without page faults after the first (docs/benchmarks.md).
    The cost is a resident size at the update's high-water mark, which the process reaches
    anyway. Linux with glibc only; `enabled` false (`Runtime.keep_freed_memory`, which the CLI
    takes from `BLAST_KEEP_FREED_MEMORY=0`) leaves glibc's defaults. Returns whether it took
    effect."""
    if not enabled or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES) and mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
