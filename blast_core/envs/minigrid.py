"""MiniGrid Dynamic-Obstacles 6x6 (random start) as the paper uses it, in its five renderings.

Per step (spec §4): the maintained `minigrid` env moves its 3 balls and the agent; reaching the
goal or colliding (with a ball or a wall) ends only the *inner* episode, which is reset at once
(a new layout) while the outer episode goes on; the outer episode is exactly `time_limit` agent
steps and then truncated, never terminated. The observation is the full top-down view (tile 8,
resized to 64x64 with nearest neighbours), with the agent drawn in the variant's style and, for
the video variants, the black background replaced by a video frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from minigrid.envs import DynamicObstaclesEnv

from blast_core.config import EnvConfig
from blast_core.config.ids import VARIANTS
from blast_core.envs.base import SeededEnv
from blast_core.envs.render import AgentStyle, GridRenderer, matte
from blast_core.envs.video import Background, video_frames

GRID_SIZE = 6
N_OBSTACLES = 3
STYLES: dict[str, AgentStyle] = {
    "color_direction": "color_circle",
    "smaller_agent": "small_triangle",
}
BACKGROUNDS = {"random_frames": "random", "video": "sequential"}


class _DynamicObstacles(DynamicObstaclesEnv):
    """minigrid's env minus the egocentric 7x7 view it builds every step: we render the full view
    ourselves, and skipping that view halves the cost of a step."""

    def gen_obs(self) -> dict:
        return {}


class DynamicObstacles(SeededEnv):
    """`minigrid:VARIANT`: uint8 (size, size, 3) observations, actions 0 left, 1 right, 2 forward.

    `info` holds the running counts of the episode: `goals`, `collisions`, the paper's
    `score = goals - collisions`, and `return`, the sum of the raw rewards (a goal gives
    1 - 0.9 * t / 144 with t the steps since the layout began, a collision -1).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, variant: str, cfg: EnvConfig, seed: int | None = None,
                 cache: Path | None = None) -> None:
        assert variant in VARIANTS, variant
        self.variant = variant
        self.cfg = cfg
        self.base = _DynamicObstacles(size=GRID_SIZE, agent_start_pos=None, n_obstacles=N_OBSTACLES)
        self.action_space = gym.spaces.Discrete(3)
        self.observation_space = gym.spaces.Box(0, 255, (cfg.size, cfg.size, 3), np.uint8)
        self.render_mode = "rgb_array"
        self._renderer = GridRenderer(STYLES.get(variant, "triangle"), cfg.size, GRID_SIZE)
        self.background = None
        if variant in BACKGROUNDS:
            frames = video_frames(cfg.video, cfg.size, cache)
            self.background = Background(frames, BACKGROUNDS[variant])
        self._bg_rng: np.random.Generator | None = None
        self.goals = self.collisions = 0
        self._return = 0.0
        self._start(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seed = self._seed(seed)
        # One generator drives layouts and obstacles. The background draws from a child stream,
        # so the five variants show the same layouts for the same seed and actions.
        self.base.np_random = self.np_random
        if seed is not None or self._bg_rng is None:
            self._bg_rng = self.np_random.spawn(1)[0]
        self.base.reset()
        self._t = self.goals = self.collisions = 0
        self._return = 0.0
        self._done = False
        frame = self.background.reset(self._bg_rng) if self.background is not None else None
        return self._observe(frame), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("call reset() before step() (the episode has ended)")
        act = int(action)
        if not 0 <= act < 3:
            raise ValueError(f"action {action!r} is not one of 0 (left), 1 (right), 2 (forward)")
        reward = 0.0
        for _ in range(self.cfg.action_repeat):
            _, r, terminated, truncated, _ = self.base.step(act)
            reward += float(r)
            if terminated or truncated:
                # A goal or a collision: count it and start a new layout without ending the
                # episode (the official code's `Repeat` wrapper).
                self.goals += int(terminated and r > 0)
                self.collisions += int(terminated and r < 0)
                self.base.reset()
        self._t += 1
        self._return += reward
        frame = self.background.step() if self.background is not None else None
        truncated = self._t >= self.cfg.time_limit
        self._done = truncated
        return self._observe(frame), reward, False, truncated, self._info()

    def render(self) -> np.ndarray | None:
        """The last observation."""
        return self._obs

    def close(self) -> None:
        self.base.close()
        super().close()

    def _observe(self, frame: np.ndarray | None) -> np.ndarray:
        obs = self._renderer.render(self.base.grid, self.base.agent_pos, self.base.agent_dir)
        if frame is not None:
            matte(obs, frame, self.cfg.matting)
        self._obs = obs
        return obs

    def _info(self) -> dict[str, Any]:
        return {
            "goals": self.goals,
            "collisions": self.collisions,
            "score": self.goals - self.collisions,
            "return": self._return,
        }
