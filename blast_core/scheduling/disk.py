"""Disk: what the runs of a command may write (replay files and checkpoints) against the free
space where their results go, said before they start.

A run's replay files hold min(replay.capacity, schedule.steps) steps: compressed, MiniGrid's
frames take ~1 % of their size and DMC's ~25 %; with `replay.mmap` they are stored as they are.
Its checkpoint folder keeps two checkpoints and writes a third before dropping the oldest; each
holds the weights, buffers and Adam's two moments per trained weight, in fp32, and the frames of
the episodes in progress.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from blast_core.errors import ConfigError
from blast_core.scheduling.memory import STEP_EXTRA_BYTES, replay_mib

STORED_FRACTION = {"minigrid": 0.02, "dmc": 0.3}
"""Compressed episode files over their arrays, rounded up from what was measured: 1.1 % for 300
MiniGrid episodes of a `cpu`-preset run, 24 % for a rendered walker_run episode."""
CHECKPOINTS_AT_ONCE = 3

def checkpoint_mib(config: Mapping[str, Any]) -> float:
    """One checkpoint of a run with this resolved config (the store's dict), at most: its
    weights and optimiser state, and the episodes in progress of its training and evaluation
    drivers (restored from their frames, blast_core/run/driver.py), each at most `time_limit`
    steps."""
    frame = int(config["env"]["size"]) ** 2 * 3 + STEP_EXTRA_BYTES
    episodes = 2 * (int(config["env"]["time_limit"]) + 1) * frame / 2**20
    from blast_core.run.checkpoint import weights_mib  # torch and the agent, to count weights

    return weights_mib(config) + episodes


def run_disk_mib(config: Mapping[str, Any]) -> int:
    """The most disk one run uses (MiB): its replay files and its checkpoints (left out for a
    config this blast cannot build, one from a newer blast)."""
    family = config["env"]["id"].split(":", 1)[0]
    stored = 1.0 if config["replay"].get("mmap") else STORED_FRACTION.get(family, 1.0)
    try:
        checkpoints = CHECKPOINTS_AT_ONCE * checkpoint_mib(config)
    except ConfigError:
        checkpoints = 0
    return round(replay_mib(config) * stored + checkpoints)


def free_mib(path: Path) -> int | None:
    """Free space on the filesystem that holds `path` (or its nearest existing parent)."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free // 2**20
            except OSError:
                return None
    return None


def check(results: Path, configs: Iterable[Mapping[str, Any]],
          free: int | None = None) -> str | None:
    """A warning line when the runs of `configs` may write more than the free space under
    `results` (`free` MiB, else read), else None. Runs already under way have written part of
    it: an upper bound."""
    configs = [c for c in configs if c]
    free = free_mib(results) if free is None else free
    if not configs or free is None:
        return None
    sizes: dict[str, int] = {}
    need = 0
    for c in configs:
        key = json.dumps(c, sort_keys=True, default=str)
        need += sizes.setdefault(key, run_disk_mib(c))
    if need <= free:
        return None
    mapped = " (replay.mmap stores frames uncompressed)" if any(
        c["replay"].get("mmap") for c in configs) else ""
    return (f"warning: {len(configs)} runs may write up to ~{need / 1024:.1f} GiB of replay "
            f"files and checkpoints{mapped}; {free / 1024:.1f} GiB free under {results}: a run "
            "that fills the disk fails, and resumes from its last checkpoint once there is room")
