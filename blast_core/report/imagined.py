"""Figure 8's imagined frames: the runs' latest checkpoints, their world models run open loop.

Its own module because it needs torch and the agent (seconds to import): `report.build` loads it
only when Figure 8 is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from blast_core.agent import ActSpace, Agent
from blast_core.envs import make
from blast_core.report.gather import CONTEXT, HORIZON
from blast_core.run.checkpoint import FORMAT
from blast_core.run.driver import act_space_of
from blast_core.run.spec import RunError, RunSpec, load_spec


def latest_checkpoint(run_dir: str | Path) -> tuple[int, dict] | None:
    """(step, state) of the run's newest loadable checkpoint, read without touching the folder.

    `Checkpoints.latest()` tidies the folder (drops `.tmp` files, renames corrupt ones), which a
    report must not do to a run that may still be writing; this only reads.
    """
    folder = Path(run_dir) / "checkpoints"
    paths = sorted(folder.glob("ckpt-*.pt")) if folder.is_dir() else []
    for path in reversed(paths):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged or half-written file: the previous one will do
            continue
        if isinstance(payload, dict) and payload.get("format") == FORMAT:
            return int(payload["step"]), payload["state"]
    return None


def load_agent(run_dir: Path, trained: bool = True) -> tuple[RunSpec, Any, int, Agent]:
    """(spec, config, step, agent) of the run in `run_dir` (`<results>/<experiment>/<run>`), its
    agent at its newest loadable checkpoint (read only: the run may still be writing), or with
    `trained=False` the same networks at initialisation from the run's seed (step 0)."""
    if not (run_dir / "run.json").is_file():
        raise RunError(f"{run_dir} is not a run's folder (no run.json in it)")
    spec, cfg = load_spec(run_dir.parent.parent, f"{run_dir.parent.name}/{run_dir.name}")
    env = make(cfg.env.id, spec.seed, cfg.env)
    try:
        space = act_space_of(env.action_space)
    finally:
        env.close()
    if not trained:
        torch.manual_seed(spec.seed)
        return spec, cfg, 0, Agent(cfg, space, "cpu")
    found = latest_checkpoint(run_dir)
    if found is None:
        raise RunError(f"{run_dir}: no loadable checkpoint")
    step, state = found
    agent = Agent(cfg, space, "cpu")
    agent.load_checkpoint_state(state["agent"])
    return spec, cfg, step, agent


def imagine(cfg: Any, state: dict, sequence: dict) -> tuple[np.ndarray, np.ndarray]:
    """(true, reconstructed) uint8 (64, 64, 3): the last of HORIZON imagined frames."""
    size = sequence["action"].shape[-1]
    agent = Agent(cfg, ActSpace(discrete=cfg.env.family == "minigrid", size=size), "cpu")
    agent.load_checkpoint_state(state["agent"])
    batch = {k: torch.as_tensor(sequence[k]) for k in ("image", "action", "is_first")}
    # The rollout samples its latents: drawn from the sequence's seed, each panel is the same
    # whatever else the report drew before it, and in every process.
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(int(sequence["seed"]))
        truth, recon = agent.world_model.open_loop(batch, context=CONTEXT, horizon=HORIZON)
    return truth[0, -1].numpy(), recon[0, -1].numpy()
