"""The environment ids, kept free of heavy imports (minigrid, dm_control) so listing is cheap."""

from __future__ import annotations

VARIANTS = ("unmodified", "color_direction", "smaller_agent", "random_frames", "video")
"""MiniGrid's renderings, in the paper's order (Figure 2)."""
MINIGRID_IDS = tuple(f"minigrid:{v}" for v in VARIANTS)
DMC_PAPER_IDS = (
    "dmc:cartpole_swingup",
    "dmc:cheetah_run",
    "dmc:cup_catch",
    "dmc:hopper_hop",
    "dmc:pendulum_swingup",
    "dmc:walker_run",
)
"""The paper's six DMC tasks, in its order."""
ENV_IDS: tuple[str, ...] = MINIGRID_IDS + DMC_PAPER_IDS
"""The paper's ids: the five MiniGrid renderings, then the six DMC tasks."""
