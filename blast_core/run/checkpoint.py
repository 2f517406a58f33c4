"""Atomic checkpoints that load safely, and the RNG states that make a resume exact.

A checkpoint is `torch.save` of plain containers (tensors, ints, floats, strings, lists, dicts,
None), so `torch.load(weights_only=True)` reads it and no arbitrary pickle is ever executed.
Writing goes to `ckpt-<step>.pt.tmp`, is fsynced and then renamed; the previous checkpoint is only
deleted once the new one is complete, so a crash at any moment leaves at least one good checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blast_core import config as C
from blast_core.agent import ActSpace, Agent
from blast_core.config import tree as T
from blast_core.errors import BlastError
from blast_core.files import atomic_write

FORMAT = "blast-checkpoint"
VERSION = 1
"""Bumped when what a checkpoint holds changes in a way older code cannot read; a newer blast
reads every older version (the agent's module names renamed since version 1 are mapped by
`agent.RENAMED`, which needed no bump: only new code writes the new names)."""
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(BlastError):
    """No checkpoint of a run can be loaded."""


class NewerCheckpoint(CheckpointError):
    """A checkpoint written by a newer blast: sound, but not for this code to read or set aside."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Checkpoints:
    """The checkpoints of one run: `ckpt-<step>.pt` files in `directory`, the newest `keep` kept."""

    def __init__(
        self, directory: Path, keep: int = 2, warn: Callable[[str], None] = _stderr
    ) -> None:
        if keep < 2:
            raise ValueError("keep at least two checkpoints: the previous is the fallback")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep, self.warn = keep, warn

    def paths(self) -> list[tuple[int, Path]]:
        """(step, path) of every complete-looking checkpoint file, oldest first."""
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def save(self, step: int, state: Mapping[str, Any]) -> Path:
        """Write `state` as the checkpoint of `step`; return its path."""
        path = self.directory / f"ckpt-{step:010d}.pt"
        payload = {"format": FORMAT, "version": VERSION, "step": step, "state": dict(state)}
        with atomic_write(path, durable=True) as f:
            torch.save(payload, f)
        _fsync_dir(self.directory)
        for _, old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path) -> dict[str, Any]:
        """The state saved in one file; CheckpointError if it is truncated, corrupt or foreign."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for a damaged zip or pickle
            raise CheckpointError(f"{path} is unreadable ({type(e).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a blast checkpoint")
        version = payload.get("version")
        if isinstance(version, int) and version > VERSION:
            raise NewerCheckpoint(f"{path} was written by a newer blast (checkpoint format "
                                  f"{version}; this one reads up to {VERSION}): update blast "
                                  "to resume this run")
        if version != VERSION:
            raise CheckpointError(f"{path} has format version {version}")
        return payload["state"]

    def latest(self) -> tuple[int, dict[str, Any]] | None:
        """The newest loadable checkpoint as (step, state), or None if there is none at all.

        A damaged newer file is reported through `warn`, set aside as `<name>.corrupt` so that it
        is never tried again, and the previous checkpoint is used."""
        for tmp in self.directory.glob("*.pt.tmp"):
            tmp.unlink()  # a save that never completed
        candidates = self.paths()
        for step, path in reversed(candidates):
            try:
                return step, self.load(path)
            except NewerCheckpoint:
                raise  # not damaged: falling back would resume from an older state
            except CheckpointError as e:
                self.warn(f"warning: checkpoint {e}; falling back to the previous one")
                os.replace(path, path.with_name(path.name + ".corrupt"))
        if candidates:
            raise CheckpointError(f"no loadable checkpoint in {self.directory}")
        return None


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- RNG states ----------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch (CUDA included), as plain containers."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of `rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


TENSOR_BYTES = 320
"""What `torch.save` adds per tensor (its record in the archive and the pickled structure): ~290
bytes measured on a `tiny` agent's checkpoint state."""


def weights_mib(config: Mapping[str, Any]) -> float:
    """A run's weights, buffers and Adam moments in fp32 (MiB), from its agent's parameter
    counts (built on torch's meta device: no memory, no time)."""
    cfg = T.from_dict(config, C.Config)
    # MiniGrid's three actions; DMC's action size varies by task (1-12), and its weights by a
    # few dense columns only: the paper's walker and cheetah size stands for all.
    act = ActSpace(True, 3) if cfg.env.family == "minigrid" else ActSpace(False, 6)
    with torch.device("meta"):
        agent = Agent(cfg, act, "meta")
    params, buffers = list(agent.parameters()), list(agent.buffers())
    trained = [p for p in params if p.requires_grad]
    numbers = sum(t.numel() for t in params + buffers) + 2 * sum(p.numel() for p in trained)
    tensors = len(params) + len(buffers) + 3 * len(trained)  # Adam: two moments and a step
    return (4 * numbers + TENSOR_BYTES * tensors) / 2**20
