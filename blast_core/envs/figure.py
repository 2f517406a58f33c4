"""Sample observations of several envs drawn as one grid (for the five MiniGrid ids: Figure 2)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

from blast_core.config import make_config
from blast_core.envs import check_env_id, make
from blast_core.errors import BlastError


def sample_observations(
    ids: Sequence[str],
    frames: int = 1,
    stride: int = 1,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Observations (E, frames, H, W, 3) uint8: each env's reset observation, then one every
    `stride` agent steps. Envs built with the same seed draw the same actions, so the MiniGrid
    variants show the same layouts in their own renderings."""
    if frames < 1 or stride < 1:
        raise BlastError(f"frames={frames} and stride={stride} must be >= 1")
    for env_id in ids:  # every id and override is checked before any env is built
        check_env_id(env_id)
    cfgs = [make_config(env_id, overrides=overrides).env for env_id in ids]
    out = []
    for env_id, cfg in zip(ids, cfgs, strict=True):
        env = make(env_id, seed, cfg)
        try:
            obs, _ = env.reset()
            row = [obs]
            while len(row) < frames:
                for _ in range(stride):
                    obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                    if terminated or truncated:
                        obs, _ = env.reset()
                row.append(obs)
        finally:
            env.close()
        out.append(np.stack(row))
    return np.stack(out)


def save_grid(obs: np.ndarray, ids: Sequence[str], path: str | Path, stride: int = 1) -> Path:
    """Draw `obs` (E, F, H, W, 3) with one column per env and one row per sampled step, as a PNG
    written atomically (a temporary file renamed), so a failure leaves no half-written figure."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise BlastError(f"--out must name a .png file, got {str(path)!r}")
    n_env, n_frames = obs.shape[:2]
    fig, axes = plt.subplots(
        n_frames, n_env, figsize=(1.9 * n_env, 1.9 * n_frames + 0.3), squeeze=False
    )
    for e, env_id in enumerate(ids):
        for f in range(n_frames):
            ax = axes[f][e]
            ax.imshow(obs[e, f], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if f == 0:
                ax.set_title(env_id.split(":", 1)[1], fontsize=9)
            if e == 0 and n_frames > 1:
                ax.set_ylabel(f"t = {f * stride}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=150)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
