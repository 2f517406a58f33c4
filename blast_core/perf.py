"""The switch between the fast update and the plain one it is checked against.

The fast path computes the same functions as the plain path (only the order of floating-point
sums changes, and random numbers are drawn in the same order), so every test of the agent holds
for both. The plain path is kept as the readable reference: `tests/test_fast_path.py` compares
losses and gradients of the two on a fixed batch, and `blast bench --plain` times it side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
