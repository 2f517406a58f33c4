"""Does a world model know where the agent is? Its decoded imagined frames, measured.

The paper's explanation of why DreamerV2 fails on `smaller_agent`: a reconstruction loss weighs
pixels, and an agent drawn at a quarter of its pixels weighs little, so the latent need not carry
where it is. This measures exactly that from finished runs' checkpoints, on the MiniGrid
renderings whose agent is the only red thing in the frame (`unmodified`, `smaller_agent`).

For each run: N sequences of the real env under seeded random actions, each without a goal or a
collision (as Figure 8 picks its one), CONTEXT frames filtered, then HORIZON steps imagined with
the replayed actions; the decoder draws every imagined frame (DV2's own decoder; from −recon on,
the stop-gradient probe), and the last filtered frame from its posterior state. The agent's
moves are fixed by the actions, so a model that tracks it draws it where the true frame has it;
the obstacles move at random, so no model can. Measured per imagined step k = 1 … HORIZON (and
for the filtered frame, `filtered_hit`):

- `hit`: the decoded frame's reddest cell-sized patch lies within half a cell of the true frame's
  (the agent drawn in the right place), with each imagined latent sampled as training's
  imagination draws it; `hit_mode` the same with each latent at its most likely class;
- `red`: the decoded frame's red mass over the true frame's (about 1: the agent drawn whole;
  about 0: not drawn; a smear over several places can reach 1 without a hit);
- `still`: the baseline of a model that leaves the agent where the last true frame had it (the
  hit rate of that frame's position), the same for every run of an env.

    .venv/bin/python benchmarks/agent_tracking.py RUN_DIR ... [--sequences 64] [--json out.json]

RUN_DIR is a run's folder (`<results>/<experiment>/<run>`): its `config.yaml`, `run.json` and its
latest checkpoint are read, nothing is written there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from blast_core.errors import BlastError
from blast_core.report.gather import CONTEXT, HORIZON, probe_sequence
from blast_core.report.imagined import load_agent

CELL = 64 / 6
"""A grid cell in pixels: the 6x6 grid (walls included) drawn at 64x64."""
PATCH = 7
"""Side of the patch whose red mass locates the agent (smaller than a cell, larger than the
smaller agent)."""


def redness(frames: np.ndarray) -> torch.Tensor:
    """[N, 64, 64, 3] uint8 -> [N, 64, 64]: how much red exceeds the other channels, in [0, 1]."""
    x = torch.as_tensor(frames).float() / 255
    return (x[..., 0] - x[..., 1:].amax(-1)).clamp(min=0)


def locate(red: torch.Tensor) -> torch.Tensor:
    """[N, 64, 64] -> [N, 2]: (row, col) of the centre of the reddest PATCH x PATCH patch."""
    mass = F.avg_pool2d(red[:, None], PATCH, stride=1, padding=PATCH // 2)[:, 0]
    flat = mass.flatten(1).argmax(1)
    return torch.stack([flat // red.shape[-1], flat % red.shape[-1]], 1).float()


def sequences(env_id: str, env_cfg: Any, n: int) -> dict[str, np.ndarray]:
    """n event-free sequences (distinct seeds), stacked as one batch."""
    found, seed = [], 0
    while len(found) < n:
        seq = probe_sequence(env_id, env_cfg, first_seed=seed)
        found.append(seq)
        seed = seq["seed"] + 1
    return {k: np.concatenate([s[k] for s in found]) for k in ("image", "action", "is_first")}


def measure(run_dir: Path, n: int) -> dict[str, Any]:
    spec, cfg, step, agent = load_agent(run_dir)
    data = sequences(cfg.env.id, cfg.env, n)
    batch = {k: torch.as_tensor(v) for k, v in data.items()}
    # Frame 0 of each rollout is the last filtered one; 1 ... HORIZON the imagined ones.
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        truth, recon = agent.world_model.open_loop(batch, CONTEXT, HORIZON, seen=True)
        torch.manual_seed(0)  # the same filtered states (the posterior is sampled) as above
        _, likely = agent.world_model.open_loop(batch, CONTEXT, HORIZON, sample=False, seen=True)
    last = locate(redness(truth[:, 0].numpy()))
    seen_hit = _near(last, locate(redness(recon[:, 0].numpy())))
    out: dict[str, list[float]] = {"hit": [], "hit_mode": [], "red": [], "still": []}
    for k in range(1, HORIZON + 1):
        t, r = redness(truth[:, k].numpy()), redness(recon[:, k].numpy())
        out["hit"].append(_near(locate(t), locate(r)))
        out["hit_mode"].append(_near(locate(t), locate(redness(likely[:, k].numpy()))))
        out["red"].append(float((r.sum((1, 2)) / t.sum((1, 2)).clamp(min=1e-6)).mean()))
        out["still"].append(_near(locate(t), last))
    return {"run": run_dir.name, "env": spec.env, "rung": spec.rung, "step": step,
            "sequences": n, "filtered_hit": seen_hit, **out}


def _near(a: torch.Tensor, b: torch.Tensor) -> float:
    """The share of rows whose two positions are within half a cell of each other."""
    return float(((a - b).norm(dim=1) <= CELL / 2).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders")
    p.add_argument("--sequences", type=int, default=64)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)
    try:
        rows = [measure(run, args.sequences) for run in args.runs]
    except BlastError as e:
        raise SystemExit(f"error: {e}") from None
    def at(h: list[float]) -> str:
        return f"{h[0]:.2f} {h[4]:.2f} {h[-1]:.2f} ({np.mean(h):.2f})"

    print(f"{'run':46} {'step':>6} filtered  hit at k=1, 5, 10 (mean)  the same, mode latents"
          "   red at k=1, 5, 10")
    for r in rows:
        m = r["red"]
        print(f"{r['run']:46} {r['step']:>6} {r['filtered_hit']:8.2f}  {at(r['hit']):24}  "
              f"{at(r['hit_mode']):24}  {m[0]:.2f} {m[4]:.2f} {m[-1]:.2f}")
    for env in dict.fromkeys(r["env"] for r in rows):
        h = next(r["still"] for r in rows if r["env"] == env)
        print(f"{'(stay put: ' + env + ')':46} {'':>6} {'':8}  {at(h)}")
    if args.json:
        args.json.write_text(json.dumps({"context": CONTEXT, "horizon": HORIZON,
                                         "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
