"""The pixels behind Figures 2 and 8: sample observations, and the probe's input sequence.

Unlike the other figures these do not come from metric rows: Figure 2 steps the real environments,
Figure 8 loads the runs' latest checkpoints and replays their episodes through the world model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blast_core.envs import make

# A fixed action plan (MiniGrid: 0 left, 1 right, 2 forward), so every variant shows the same
# layout and the same agent moves, and only the rendering differs between columns.
PLAN = (2, 2, 2, 1, 2, 2, 2)


def sample_observations(
    envs: list[str] | tuple[str, ...], seed: int = 0, at: tuple[int, ...] = (0, 3, 6)
) -> dict[str, list[np.ndarray]]:
    """{env: [the observation after t steps of PLAN for t in `at`]} from the real environments."""
    out = {}
    for env_id in envs:
        env = make(env_id, seed)
        try:
            obs, _ = env.reset()
            shots = [obs] if 0 in at else []
            for t in range(1, max(at) + 1):
                obs, *_ = env.step(PLAN[(t - 1) % len(PLAN)])
                if t in at:
                    shots.append(obs)
        finally:
            env.close()
        out[env_id] = [np.asarray(s, dtype=np.uint8) for s in shots]
    return out


# --- Figure 8: the probe decoder's view of an imagined rollout ------------------------------------

CONTEXT, HORIZON = 5, 10
"""The world model filters CONTEXT true frames, then imagines HORIZON steps; Figure 8 shows the
last imagined one (the paper's "tenth frame of a simulated roll out")."""


def probe_sequence(env_id: str, env_cfg: Any, first_seed: int = 0, tries: int = 500) -> dict:
    """A (1, CONTEXT + HORIZON) sequence from the real env under seeded uniform random actions,
    in the replay format (action = one-hot of the action that led to the frame, zeros at reset).

    Both runs of a row see the same sequence, so one true frame stands beside both
    reconstructions. The first seed whose sequence has no goal and no collision is used: either
    starts a new layout that no model can foresee. Returns arrays and the seed used.
    """
    length = CONTEXT + HORIZON
    for seed in range(first_seed, first_seed + tries):
        env = make(env_id, seed, env_cfg)
        rng = np.random.default_rng(seed)
        try:
            obs, _ = env.reset()
            images, actions = [obs], [np.zeros(env.action_space.n, np.float32)]
            for _ in range(length - 1):
                a = int(rng.integers(env.action_space.n))
                obs, _, _, _, info = env.step(a)
                images.append(obs)
                actions.append(np.eye(env.action_space.n, dtype=np.float32)[a])
        finally:
            env.close()
        if info["goals"] + info["collisions"] == 0 or seed == first_seed + tries - 1:
            break
    is_first = np.zeros(length, bool)
    is_first[0] = True
    return {"image": np.stack(images)[None], "action": np.stack(actions)[None],
            "is_first": is_first[None], "seed": seed}
