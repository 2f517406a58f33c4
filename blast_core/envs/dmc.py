"""Pixel DeepMind Control: `dmc:DOMAIN_TASK` as DreamerV2 sets it up (spec §5).

64x64 RGB from camera 0 (quadruped: 2), each action repeated `action_repeat` times with the
rewards summed, actions in [-1, 1] rescaled to the task's bounds, and episodes of `time_limit`
agent steps (500 x 2 = the suite's 1000 frames) that end truncated, never terminated. Only the
last frame of a repeat is rendered: rendering is most of the cost (~15 ms a frame in software).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import gymnasium as gym
import numpy as np
from absl import logging as absl_logging

from blast_core.config import EnvConfig
from blast_core.envs.base import SeededEnv
from blast_core.envs.gl import ensure_gl, install_hint
from blast_core.errors import BlastError

ALIASES = {"cup": "ball_in_cup"}
"""DreamerV2's short domain names."""
CAMERAS = {"quadruped": 2}
"""Camera per domain where it is not 0 (DreamerV2's choice)."""


def _suite():
    backend = ensure_gl()  # before dm_control's first import, which fixes the GL backend
    # dm_control logs a deprecation warning per cheetah load; keep the user's terminal clean.
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        from dm_control import suite  # after ensure_gl(); only dmc: ids need MuJoCo
    except (ImportError, RuntimeError, OSError) as e:  # a user's MUJOCO_GL that cannot work
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BlastError(
            f"dm_control cannot start with MUJOCO_GL={backend} ({reason}); unset MUJOCO_GL to "
            f"let blast choose, or {install_hint()}"
        ) from None
    return suite


@functools.cache
def suite_tasks() -> dict[str, tuple[str, str]]:
    """Every dm_control suite task: 'domain_task' -> (domain, task)."""
    return {f"{d}_{t}": (d, t) for d, t in _suite().ALL_TASKS}


def parse_task(name: str) -> tuple[str, str] | None:
    """'cup_catch' -> ('ball_in_cup', 'catch'); None when no suite task has that name."""
    for short, full in ALIASES.items():
        if name.startswith(short + "_"):
            name = full + name[len(short) :]
    return suite_tasks().get(name)


class DMC(SeededEnv):
    """A dm_control suite task with pixel observations (size, size, 3) uint8."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, name: str, cfg: EnvConfig, seed: int | None = None) -> None:
        task = parse_task(name)
        if task is None:
            raise BlastError(f"unknown dm_control task {name!r}")
        self.domain, self.task = task
        self.cfg = cfg
        self.camera = CAMERAS.get(self.domain, 0)
        # Our own step counter ends episodes, so the suite's time limit is lifted.
        self._env = _suite().load(
            self.domain, self.task, task_kwargs={"random": seed, "time_limit": math.inf}
        )
        if not cfg.shadows:
            self._env.physics.model.light_castshadow[:] = 0
        spec = self._env.action_spec()
        self._low = spec.minimum.astype(np.float64)
        self._high = spec.maximum.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self.observation_space = gym.spaces.Box(0, 255, (cfg.size, cfg.size, 3), np.uint8)
        self.render_mode = "rgb_array"
        fps = 1.0 / (self._env.control_timestep() * cfg.action_repeat)
        self.metadata = {**self.metadata, "render_fps": round(fps)}
        self._start(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seed = self._seed(seed)
        if seed is not None:
            # The task draws its initial states from this RandomState; reseeding it in place
            # makes the episode a function of the seed alone.
            self._env.task.random.seed(seed)
        self._env.reset()
        self._t = 0
        self._done = False
        return self._observe(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("call reset() before step() (the episode has ended)")
        action = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        # [-1, 1] -> the task's bounds (identity for the suite); outside values are clipped.
        scaled = self._low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self._high - self._low)
        reward, terminated = 0.0, False
        for _ in range(self.cfg.action_repeat):
            step = self._env.step(scaled)
            reward += float(step.reward or 0.0)
            if step.last():
                # Only a task with a true terminal state (none of the paper's) ends here.
                terminated = step.discount == 0.0
                break
        self._t += 1
        truncated = not terminated and self._t >= self.cfg.time_limit
        self._done = terminated or truncated
        return self._observe(), reward, bool(terminated), truncated, {}

    def render(self) -> np.ndarray | None:
        """The last observation."""
        return self._obs

    def close(self) -> None:
        # Free the GL context now: left to interpreter exit, OSMesa prints an atexit error.
        physics = getattr(self._env, "physics", None) if hasattr(self, "_env") else None
        if physics is not None and hasattr(physics, "_data"):
            physics.free()
        super().close()

    def _observe(self) -> np.ndarray:
        size = self.cfg.size
        try:
            frame = self._env.physics.render(height=size, width=size, camera_id=self.camera)
        except Exception as e:  # GL failures surface here, at the first render
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BlastError(f"MuJoCo rendering failed ({reason}); {install_hint()}") from None
        # physics.render returns a view with a negative stride: copy it into a plain array.
        self._obs = frame.astype(np.uint8, copy=True)
        return self._obs
