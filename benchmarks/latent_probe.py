"""Does a world model's latent hold where the agent is? Linear probes on frozen latents.

`agent_tracking.py` asks the decoder to draw the agent; a decoder that fails to draw it says
little about a latent that might hold it all the same (BLAST's probe decoder learns from a
detached latent; DreamerV2's weighs the agent's few pixels little). This asks the latent itself:
a linear classifier, fitted on a finished run's frozen latents, reads the agent's cell and
direction from them, and is scored on sequences it was not fitted on. It works on every MiniGrid
rendering (the environment says where the agent is; nothing is read from pixels).

For each run: 2N sequences of the real env under seeded uniform random actions (an episode's end
starts the next one, marked as the replay marks it), filtered by the run's posterior from its
latest checkpoint. Targets, from the environment at each frame: the agent's cell (16 interior
cells), its direction (4), and what the cell it faces holds (`front`: nothing, a wall, an
obstacle or the goal: where a forward step leads). Features at each frame t (t >= BURN_IN, so
the filter has seen a few frames): `post` [z_t, h_t] (the posterior of the frame it has seen),
`deter` h_t alone (what the recurrent state carries, before z_t), and `prior` [ẑ_t, h_t] (the
one-step prediction from t−1's posterior and the action: the most likely ẑ_t, without the
frame). The classifier is multinomial logistic regression on standardised features (L2,
full-batch L-BFGS), fitted on the first N sequences and scored on the other N; `post_mlp` reads
`post` with a one-hidden-layer network instead (a latent can hold what no linear read finds).
`chance` is the test accuracy of always naming the most common training class.

    .venv/bin/python benchmarks/latent_probe.py RUN_DIR ... [--sequences 96] [--untrained]
        [--json out.json]

`--untrained` probes each run's networks at initialisation (its seed), step 0: what a random
encoder and filter hold before any training, the baseline a trained latent is read against.

RUN_DIR is a run's folder (`<results>/<experiment>/<run>`); nothing is written there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from blast_core.agent import Agent
from blast_core.envs import make
from blast_core.errors import BlastError
from blast_core.report.imagined import load_agent

LENGTH = 50
"""Frames per sequence (the replay's sequence length at the `cpu` preset)."""
BURN_IN = 5
"""Frames the filter sees before its latents are probed."""
L2 = 1e-3
"""The classifier's weight decay (on standardised features)."""
MLP_WIDTH, MLP_EPOCHS = 256, 60
"""The nonlinear probe of `post`: what a linear one misses may still be there."""


FRONT = {None: 0, "wall": 1, "ball": 2, "goal": 3}
"""What the cell the agent faces holds: where a forward step leads (nowhere, a collision, the
goal) is what a policy must foresee."""


def front_of(grid_env: Any) -> int:
    """The FRONT class of the cell in front of a MiniGrid env's agent."""
    thing = grid_env.grid.get(*grid_env.front_pos)
    return FRONT[thing.type if thing is not None else None]


def collect(env_id: str, env_cfg: Any, n: int, first_seed: int) -> dict[str, np.ndarray]:
    """n sequences of LENGTH frames under random actions, in the replay's format (the action that
    led to a frame, zeros at a reset), with the agent's cell and direction and what it faces at
    each frame."""
    out: dict[str, list] = {"image": [], "action": [], "is_first": [], "cell": [], "dir": [],
                            "front": []}
    for i in range(n):
        env = make(env_id, first_seed + i, env_cfg)
        rng = np.random.default_rng(first_seed + i)
        size = env.action_space.n
        seq: dict[str, list] = {k: [] for k in out}
        obs, _ = env.reset()
        first, action = True, np.zeros(size, np.float32)
        for _ in range(LENGTH):
            x, y = env.base.agent_pos  # column, row of the 6 x 6 grid; 1..4 inside the walls
            for k, v in (("image", obs), ("action", action), ("is_first", first),
                         ("cell", 4 * (y - 1) + (x - 1)), ("dir", env.base.agent_dir),
                         ("front", front_of(env.base))):
                seq[k].append(v)
            a = int(rng.integers(size))
            obs, _, terminated, truncated, _ = env.step(a)
            first, action = False, np.eye(size, dtype=np.float32)[a]
            if terminated or truncated:
                obs, _ = env.reset()
                first, action = True, np.zeros(size, np.float32)
        env.close()
        for k in out:
            out[k].append(np.stack(seq[k]))
    return {k: np.stack(v) for k, v in out.items()}


@torch.no_grad()
def features(agent: Agent, data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """post, deter and prior features of every probed frame, flattened to [N * (T - BURN_IN), D].
    The posterior is sampled (as in acting) from a fixed seed."""
    wm = agent.world_model
    wm.eval()
    action = torch.as_tensor(data["action"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        post = wm.filtered(torch.as_tensor(data["image"]), action,
                           torch.as_tensor(data["is_first"]))
        # Frame t's prior: t-1's posterior stepped with the action that led to t, as filtering
        # does before it sees frame t (a reset's frame has none: `measure` leaves those out).
        prev = {k: v[:, BURN_IN - 1:-1].flatten(0, 1) for k, v in post.items()}
        prior = wm.rssm.img_step(prev, action[:, BURN_IN:].flatten(0, 1), sample=False)
    probed = {k: v[:, BURN_IN:].flatten(0, 1) for k, v in post.items()}
    return {"post": wm.rssm.feat(probed), "deter": probed["deter"],
            "prior": wm.rssm.feat(prior)}


def _standardised(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Both sets scaled by the training rows' mean and spread (a constant feature stays 0)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-4)
    return (train_x - mean) / std, (test_x - mean) / std


def fit_and_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                    classes: int) -> torch.Tensor:
    """Test rows' classes as named by multinomial logistic regression fitted on the training
    rows."""
    train_x, test_x = _standardised(train_x, test_x)
    weight = torch.zeros(train_x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(train_x @ weight + bias, train_y) + L2 * weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (test_x @ weight + bias).argmax(1)


def fit_and_predict_mlp(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                        classes: int) -> torch.Tensor:
    """Test rows' classes as named by a one-hidden-layer network (MLP_WIDTH ReLU units, Adam,
    MLP_EPOCHS epochs of minibatches of 128, fixed in advance: nothing is chosen on the test
    rows)."""
    train_x, test_x = _standardised(train_x, test_x)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(train_x.shape[1], MLP_WIDTH), torch.nn.ReLU(),
                              torch.nn.Linear(MLP_WIDTH, classes))
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    for _ in range(MLP_EPOCHS):
        for idx in torch.randperm(len(train_x), generator=gen).split(128):
            opt.zero_grad()
            F.cross_entropy(net(train_x[idx]), train_y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return net(test_x).argmax(1)


def accuracy(named: torch.Tensor, truth: torch.Tensor) -> float:
    return (named == truth).double().mean().item()


def recall(named: torch.Tensor, truth: torch.Tensor, classes: dict) -> dict[str, float | None]:
    """Per class, the share of its test rows named right (None where the test has none): an
    accuracy near the majority class's share can hide a class the latent never tells apart."""
    return {str(k): accuracy(named[truth == i], truth[truth == i]) if (truth == i).any() else None
            for k, i in classes.items()}


def precision(named: torch.Tensor, truth: torch.Tensor,
              classes: dict) -> dict[str, float | None]:
    """Per class, the share of the rows named so that are so (None where none is named so): a
    rare class named often scores a high recall and a low precision."""
    return recall(truth, named, classes)


def measure(run_dir: Path, n: int, untrained: bool = False) -> dict[str, Any]:
    # Untrained: the same networks at initialisation, what random features already hold.
    spec, cfg, step, agent = load_agent(run_dir, trained=not untrained)
    # Seeds far from training's and evaluation's: layouts the run has not been scored on.
    train, test = (collect(cfg.env.id, cfg.env, n, 10**6 + k * n) for k in (0, 1))
    # Every frame after the burn-in but an episode's first (a new layout: nothing to predict).
    keep_tr, keep_te = (torch.as_tensor(~d["is_first"][:, BURN_IN:]).flatten()
                        for d in (train, test))
    fx = {k: v[keep_tr] for k, v in features(agent, train).items()}
    tx = {k: v[keep_te] for k, v in features(agent, test).items()}
    out: dict[str, Any] = {}
    for target, classes in (("cell", 16), ("dir", 4), ("front", len(FRONT))):
        ytr = torch.as_tensor(train[target][:, BURN_IN:]).flatten().long()[keep_tr]
        yte = torch.as_tensor(test[target][:, BURN_IN:]).flatten().long()[keep_te]
        named = {name: fit_and_predict(fx[name], ytr, tx[name], classes) for name in fx}
        named["post_mlp"] = fit_and_predict_mlp(fx["post"], ytr, tx["post"], classes)
        out[target] = {name: accuracy(y, yte) for name, y in named.items()}
        out[target]["chance"] = float((yte == torch.bincount(ytr).argmax()).float().mean())
        if target == "front":
            out["front_recall"] = {name: recall(named[name], yte, FRONT)
                                   for name in ("post", "post_mlp")}
            out["front_precision"] = {name: precision(named[name], yte, FRONT)
                                      for name in ("post", "post_mlp")}
            out["front_recall"]["share"] = {
                str(k): float((yte == i).float().mean()) for k, i in FRONT.items()}
    return {"run": run_dir.name, "env": spec.env, "rung": spec.rung, "seed": spec.seed,
            "step": step, "sequences": n, "frames": int(fx["post"].shape[0]), **out}


def _two(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders")
    p.add_argument("--sequences", type=int, default=96, help="per split (fit, test)")
    p.add_argument("--untrained", action="store_true",
                   help="probe each run's networks at initialisation instead (a baseline)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    names = ("post", "deter", "prior", "post_mlp", "chance")
    print(f"{'run':46} {'step':>6}  cell: post deter prior mlp chance   "
          "dir: post deter prior mlp chance   front: post deter prior mlp chance", flush=True)
    for run in args.runs:
        try:
            r = measure(run, args.sequences, args.untrained)
        except BlastError as e:
            raise SystemExit(f"error: {e}") from None
        rows.append(r)
        print(f"{r['run']:46} {r['step']:>6}" + "".join(
            "        " + " ".join(f"{r[t][k]:.2f}" for k in names)
            for t in ("cell", "dir", "front")), flush=True)
        rec = r["front_recall"]
        print(f"{'':53}front recall, post / mlp (share of test frames): " + ", ".join(
            f"{k}: {_two(rec['post'][k])} / {_two(rec['post_mlp'][k])} ({rec['share'][k]:.2f})"
            for k in rec["share"]), flush=True)
        pre = r["front_precision"]
        print(f"{'':53}front precision, post / mlp: " + ", ".join(
            f"{k}: {_two(pre['post'][k])} / {_two(pre['post_mlp'][k])}" for k in rec["share"]),
            flush=True)
    if args.json:
        out = {"length": LENGTH, "burn_in": BURN_IN, "l2": L2, "mlp_width": MLP_WIDTH,
               "mlp_epochs": MLP_EPOCHS, "untrained": args.untrained, "runs": rows}
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
