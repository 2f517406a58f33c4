"""Environment throughput: agent steps per second of each env id, rendering included."""

from __future__ import annotations

import time
from collections.abc import Sequence

from blast_core.envs import check_env_id, make
from blast_core.errors import BlastError

WARMUP_STEPS = 10
"""Steps before the clock starts: the first renders create GL contexts and fill tile caches."""


def bench_env(env_id: str, steps: int, seed: int = 0) -> dict:
    """Time `steps` uniformly random agent steps of one env (resets included, as in a run)."""
    if steps < 1:
        raise BlastError(f"steps={steps} must be >= 1")
    env = make(env_id, seed)
    try:
        env.reset()
        for _ in range(WARMUP_STEPS):
            _step(env)
        start = time.perf_counter()
        for _ in range(steps):
            _step(env)
        seconds = time.perf_counter() - start
        repeat = env.cfg.action_repeat
    finally:
        env.close()
    return {
        "env": env_id,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "frames_per_s": steps * repeat / seconds,
    }


def _step(env) -> None:
    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
    if terminated or truncated:
        env.reset()


def bench_envs(ids: Sequence[str], steps: int) -> list[dict]:
    """One row per id: env, steps, seconds, steps_per_s, frames_per_s (steps x action repeat)."""
    for env_id in ids:  # every id is checked before anything is timed
        check_env_id(env_id)
    return [bench_env(env_id, steps) for env_id in ids]
