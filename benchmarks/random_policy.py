"""The score of a uniform random policy: the floor that docs/results.md sets learning against.

    python benchmarks/random_policy.py --env minigrid:unmodified --episodes 100 --first-seed 1000

Episode k is reset with seed first_seed + k and its actions drawn from a generator seeded the
same way, so the numbers repeat exactly. The score is the env's `info["score"]` at the episode's
end (MiniGrid: goals − collisions, the paper's metric), else the reward sum — as in training.
"""

from __future__ import annotations

import argparse

import numpy as np

from blast_core.envs import make


def random_scores(env_id: str, episodes: int, first_seed: int) -> list[float]:
    scores = []
    for k in range(episodes):
        seed = first_seed + k
        env = make(env_id, seed)
        env.action_space.seed(seed)
        env.reset(seed=seed)
        total, done, info = 0.0, False, {}
        while not done:
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        scores.append(float(info.get("score", total)))
        env.close()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="minigrid:unmodified")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=1000)
    args = parser.parse_args()
    scores = np.array(random_scores(args.env, args.episodes, args.first_seed))
    print(f"{args.env}: uniform random policy, {args.episodes} episodes (seeds "
          f"{args.first_seed}–{args.first_seed + args.episodes - 1}): score "
          f"{scores.mean():.2f} ± {scores.std(ddof=1):.2f} (std over episodes), "
          f"min {scores.min():.0f}, max {scores.max():.0f}")


if __name__ == "__main__":
    main()
