"""Environments: one factory, `make(env_id, seed)`, for MiniGrid's renderings and pixel DMC.

Every env is a plain `gymnasium.Env` with uint8 (64, 64, 3) observations, `terminated` always
False and `truncated` True at exactly `time_limit` agent steps. Ids:

    minigrid:unmodified | color_direction | smaller_agent | random_frames | video
    dmc:DOMAIN_TASK      any dm_control suite task (the paper's six are in ENV_IDS)

Heavy imports happen only when needed: minigrid for a MiniGrid env, dm_control (and its OpenGL
backend) for a DMC id.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from blast_core.config import ConfigError, EnvConfig, make_config
from blast_core.config.ids import DMC_PAPER_IDS, ENV_IDS, MINIGRID_IDS, VARIANTS

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "DMC_PAPER_IDS",
    "ENV_IDS",
    "MINIGRID_IDS",
    "VARIANTS",
    "check_env_id",
    "check_inputs",
    "dmc_ids",
    "make",
]


def _dmc() -> ModuleType:
    from blast_core.envs import dmc  # gymnasium, then dm_control and MuJoCo: only for dmc: ids

    return dmc


def _unknown(env_id: str) -> ConfigError:
    return ConfigError(
        f"unknown env id {env_id!r}; valid: {', '.join(ENV_IDS)}, or dmc:DOMAIN_TASK for any "
        "dm_control suite task (blast envs list --all)"
    )


def check_env_id(env_id: str) -> tuple[str, str]:
    """Split a valid id into (family, name); raise ConfigError listing the valid ids otherwise.

    A `dmc:` id is checked against the dm_control suite, which imports dm_control (and so picks
    the OpenGL backend) the first time.
    """
    family, _, name = env_id.partition(":")
    if family == "minigrid" and name in VARIANTS:
        return family, name
    if family == "dmc" and name:
        if _dmc().parse_task(name) is not None:
            return family, name
    raise _unknown(env_id)


def check_inputs(cfg: EnvConfig) -> None:
    """What a run's env reads from outside its config, checked before the run writes anything:
    the env id (a `dmc:` task against the suite) and the video background's file."""
    check_env_id(cfg.id)
    if cfg.video:
        from blast_core.envs.video import check_video  # imageio: only with a video

        check_video(cfg.video)


def dmc_ids() -> list[str]:
    """Every dm_control suite task as a `dmc:` id."""
    return [f"dmc:{name}" for name in _dmc().suite_tasks()]


def _check_cfg(cfg: EnvConfig, family: str) -> None:
    if cfg.family != family:
        raise ConfigError(f"env config for {cfg.id!r} cannot build a {family}: env")
    for key in ("size", "action_repeat", "time_limit"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"env.{key}={getattr(cfg, key)} must be >= 1")


def make(env_id: str, seed: int, cfg: EnvConfig | None = None,
         cache: Path | None = None) -> gym.Env:
    """Build the env `env_id`; its first `reset()` without a seed uses `seed`.

    `cfg` defaults to the family's paper settings (`make_config(env_id).env`); its `size`,
    `action_repeat`, `time_limit`, `video`, `matting` and `shadows` are honoured. `cache` is a
    folder where runs share what is slow to build (a video file's decoded frames: a run passes
    `<results>/.cache`); None keeps it in this process only.
    """
    family, name = check_env_id(env_id)
    cfg = make_config(env_id).env if cfg is None else cfg
    _check_cfg(cfg, family)
    if family == "minigrid":
        from blast_core.envs.minigrid import DynamicObstacles  # minigrid and pygame

        return DynamicObstacles(name, cfg, seed, cache)
    return _dmc().DMC(name, cfg, seed)
