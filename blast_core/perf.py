"""How the update's arithmetic runs: the fast path or the plain one it is checked against, and
fp32 or bf16 autocast.

The fast path computes the same functions as the plain path (only the order of floating-point
sums changes, and random numbers are drawn in the same order), so every test of the agent holds
for both. The plain path is kept as the readable reference: `tests/test_fast_path.py` compares
losses and gradients of the two on a fixed batch, and `blast bench --path both` times the two
side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

_fast = True


def fast_path() -> bool:
    """Whether the agent's fast kernels are on (the default)."""
    return _fast


@contextmanager
def plain_path(plain: bool = True) -> Iterator[None]:
    """Run the enclosed code on the plain path (or, with plain=False, on the fast one)."""
    global _fast
    before, _fast = _fast, not plain
    try:
        yield
    finally:
        _fast = before


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward passes' context for `Config.precision`: under bf16, torch's autocast runs
    matmuls and convolutions in bf16. It leaves the rest in the dtype it is given, so the agent
    casts back to fp32 where precision matters (the GRU's LayerNorm and state, BatchNorm, every
    distribution, the KL and the heads' outputs). Backward passes run outside it, as torch asks."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
