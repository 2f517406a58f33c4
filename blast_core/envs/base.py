"""What every blast env shares: seeding by `make`'s seed and the episode bookkeeping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class SeededEnv(gym.Env):
    """The first `reset()` that names no seed uses the seed given to `make`, so `make(id, seed)`
    alone fixes the run; later resets continue the env's generator."""

    def _start(self, seed: int | None) -> None:
        self._first_seed = seed
        self._t = 0
        self._done = True  # until the first reset
        self._obs: np.ndarray | None = None
        if seed is not None:
            self.action_space.seed(seed)

    def _seed(self, seed: int | None) -> int | None:
        """gymnasium's reset seeding with `make`'s seed as the first default; returns the seed."""
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        super().reset(seed=seed)
        return seed
