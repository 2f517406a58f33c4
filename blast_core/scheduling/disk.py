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
TENSOR_BYTES = 320
"""What `torch.save` adds per tensor (its record in the archive and the pickled structure): ~290
bytes measured on a `tiny` agent's checkpoint state."""


def checkpoint_mib(config: Mapping[str, Any]) -> float:
    """One checkpoint of a run with this resolved config (the store's dict), at most: its
    weights and optimiser state, and the episodes in progress of its training and evaluation
    drivers (restored from their frames, blast_core/run/loop.py), each at most `time_limit`
    steps."""
    frame = int(config["env"]["size"]) ** 2 * 3 + STEP_EXTRA_BYTES
    episodes = 2 * (int(config["env"]["time_limit"]) + 1) * frame / 2**20
    return weights_mib(config) + episodes


def weights_mib(config: Mapping[str, Any]) -> float:
    """A run's weights, buffers and Adam moments in fp32 (MiB), from its agent's parameter
    counts (built on torch's meta device: no memory, no time)."""
    import torch

    from blast_core import config as C
    from blast_core.agent import ActSpace, Agent
    from blast_core.config import tree as T

    cfg = T.from_dict(config, C.Config)
    act = ActSpace(True, 3) if cfg.env.family == "minigrid" else ActSpace(False, 6)
    with torch.device("meta"):
        agent = Agent(cfg, act, "meta")
    params, buffers = list(agent.parameters()), list(agent.buffers())
    trained = [p for p in params if p.requires_grad]
    numbers = sum(t.numel() for t in params + buffers) + 2 * sum(p.numel() for p in trained)
    tensors = len(params) + len(buffers) + 3 * len(trained)  # Adam: two moments and a step
    return (4 * numbers + TENSOR_BYTES * tensors) / 2**20


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
