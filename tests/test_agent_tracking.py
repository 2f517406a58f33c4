"""benchmarks/agent_tracking.py reads where the agent is from pixels: on real MiniGrid frames its
locator must find the cell the environment has the agent in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from blast_core.envs import make

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "agent_tracking.py"


@pytest.fixture(scope="module")
def tracking():
    spec = importlib.util.spec_from_file_location("agent_tracking", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env_id", ["minigrid:unmodified", "minigrid:smaller_agent"])
def test_the_locator_finds_the_agents_cell_in_real_frames(tracking, env_id):
    env = make(env_id, 3)
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    frames, centres = [], []
    for _ in range(150):
        x, y = env.base.agent_pos  # column, row of the 6 x 6 grid, walls included
        frames.append(obs)
        centres.append([(y + 0.5) * tracking.CELL, (x + 0.5) * tracking.CELL])
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    found = tracking.locate(tracking.redness(np.stack(frames))).numpy()
    error = np.linalg.norm(found - np.array(centres), axis=1)
    assert error.max() < tracking.CELL / 3  # well inside the agent's own cell, every frame
    assert len({tuple(c) for c in centres}) > 4  # the agent did move between cells
    # The hit rule: a position is a hit within half a cell, so a neighbouring cell never is.
    here = tracking.locate(tracking.redness(np.stack(frames[:1])))
    step = torch.tensor([[0.0, tracking.CELL]])
    assert tracking._near(here, here + 0.4 * step) == 1.0
    assert tracking._near(here, here + step) == 0.0
