"""One env, stepped by the agent: its episodes recorded for replay, restorable from their actions.

Episodes reset with a seed made from (run seed, stream, episode index), so the episode in
progress is restored by resetting with its seed and re-stepping its stored actions: a checkpoint
holds no pickled env state.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from blast_core.agent import ActSpace
from blast_core.run.replay import EpisodeBuffer


def episode_seed(seed: int, stream: int, index: int) -> int:
    """The reset seed of episode `index` of a stream (0: training, 1: evaluation)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0] >> 1)


def act_space_of(space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Discrete):
        return ActSpace(discrete=True, size=int(space.n))
    return ActSpace(discrete=False, size=int(np.prod(space.shape)))


class Driver:
    """Steps one env, recording replay entries; episode seeds make the episode in progress
    restorable from its actions alone (no pickled env state)."""

    def __init__(self, env: gym.Env, act_space: Any, seed: int, stream: int) -> None:
        self.env, self.space, self.seed, self.stream = env, act_space, seed, stream
        self.index = 0  # episodes finished in this stream
        self.episode = EpisodeBuffer()
        self.state: Any = None  # the agent's policy state

    def reset(self) -> None:
        obs, _ = self.env.reset(seed=episode_seed(self.seed, self.stream, self.index))
        self.episode.clear()
        zeros = np.zeros(self.space.size, np.float32)
        self.episode.add({"image": obs, "action": zeros, "reward": 0.0, "is_first": True,
                          "is_last": False, "is_terminal": False})

    def obs(self, device: str) -> dict[str, torch.Tensor]:
        last = self.episode.entries[-1]
        return {"image": torch.as_tensor(last["image"], device=device)[None],
                "is_first": torch.as_tensor(last["is_first"], device=device).reshape(1)}

    def _env_action(self, action: np.ndarray) -> Any:
        return int(np.argmax(action)) if self.space.discrete else action.astype(np.float32)

    def step(self, action: np.ndarray) -> dict[str, Any] | None:
        """Step with an agent action; return the finished episode (then reset) or None."""
        obs, reward, terminated, truncated, info = self.env.step(self._env_action(action))
        self.episode.add({"image": obs, "action": action, "reward": reward, "is_first": False,
                          "is_last": terminated or truncated, "is_terminal": terminated})
        if not (terminated or truncated):
            return None
        episode = self.episode.arrays()
        ret = float(episode["reward"].sum())
        done = {"episode": episode, "index": self.index, "return": ret,
                "score": float(info.get("score", ret))}
        self.index += 1
        self.reset()
        return done

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "policy": self.state,
                "episode": {k: torch.from_numpy(v) for k, v in self.episode.arrays().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index, self.state = state["index"], state["policy"]
        self.reset()
        episode = {k: v.numpy() for k, v in state["episode"].items()}
        for action in episode["action"][1:]:
            self.env.step(self._env_action(action))
        self.episode.load(episode)
