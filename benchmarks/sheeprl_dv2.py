"""Time one sheeprl DreamerV2 update at blast's paper sizes (the baseline of `docs/benchmarks.md`).

Run it with a throwaway virtualenv that has sheeprl (never blast's own):

    python3 -m venv /tmp/sheeprl-venv
    /tmp/sheeprl-venv/bin/pip install /path/to/torch-2.13.0+cpu.whl sheeprl
    /tmp/sheeprl-venv/bin/python benchmarks/sheeprl_dv2.py --family minigrid --reps 5

It builds sheeprl's own agent through its Hydra config (sizes overridden to blast's paper sizes),
feeds `sheeprl.algos.dreamer_v2.dreamer_v2.train` a fixed synthetic batch, and prints one JSON
line with the median milliseconds of the whole update after warm-up. The slow critic is copied
before each update as sheeprl's training loop does every 100 updates (a small cost, left in).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from hydra import compose, initialize_config_module
from lightning.fabric import Fabric
from omegaconf import OmegaConf
from sheeprl.algos.dreamer_v2.agent import build_agent
from sheeprl.algos.dreamer_v2.dreamer_v2 import train
from sheeprl.algos.dreamer_v2.utils import build_optimizer
from sheeprl.utils.utils import dotdict

# blast's paper sizes per family (blast_core/config/schema.py FAMILY): RSSM width, latents, actions.
SIZES = {
    "minigrid": {"rssm": 600, "stoch": 16, "discrete": 64, "actions": 3, "continuous": False,
                 "lr": 4e-4, "ent": 0.1},
    "dmc": {"rssm": 200, "stoch": 8, "discrete": 64, "actions": 6, "continuous": True,
            "lr": 3e-4, "ent": 1e-4},
}


def config(family: str, batch: int, length: int) -> dotdict:
    s = SIZES[family]
    wm = "algo.world_model"
    overrides = [
        "exp=dreamer_v2", "env=dummy", "metric.log_level=0", "algo.cnn_keys.encoder=[rgb]",
        "algo.mlp_keys.encoder=[]", f"algo.per_rank_batch_size={batch}",
        f"algo.per_rank_sequence_length={length}", "algo.horizon=15",
        "algo.dense_units=400", "algo.mlp_layers=4", "algo.layer_norm=False",
        f"{wm}.encoder.cnn_channels_multiplier=48",
        f"{wm}.recurrent_model.recurrent_state_size={s['rssm']}",
        f"{wm}.transition_model.hidden_size={s['rssm']}",
        f"{wm}.representation_model.hidden_size={s['rssm']}",
        f"{wm}.stochastic_size={s['stoch']}", f"{wm}.discrete_size={s['discrete']}",
        f"{wm}.use_continues=False", f"{wm}.optimizer.lr={s['lr']}",
        f"algo.actor.ent_coef={s['ent']}", "algo.compile.enabled=False",
    ]
    with initialize_config_module(version_base="1.3", config_module="sheeprl.configs"):
        cfg = compose(config_name="config", overrides=overrides)
    return dotdict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def make_batch(family: str, batch: int, length: int) -> dict[str, torch.Tensor]:
    """sheeprl's time-major [T, B, ...] batch of float tensors (images in 0..255)."""
    s = SIZES[family]
    g = torch.Generator().manual_seed(0)
    if s["continuous"]:
        actions = torch.rand(length, batch, s["actions"], generator=g) * 2 - 1
    else:
        idx = torch.randint(0, s["actions"], (length, batch), generator=g)
        actions = torch.nn.functional.one_hot(idx, s["actions"]).float()
    zeros = torch.zeros(length, batch, 1)
    return {
        "rgb": torch.randint(0, 256, (length, batch, 3, 64, 64), generator=g).float(),
        "actions": actions, "rewards": torch.rand(length, batch, 1, generator=g),
        "terminated": zeros.clone(), "truncated": zeros.clone(), "is_first": zeros.clone(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=sorted(SIZES), default="minigrid")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (as `blast bench --clock cpu`)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = config(args.family, args.batch, args.length)
    s = SIZES[args.family]
    fabric = Fabric(devices=1, accelerator="cpu", precision="32-true")
    fabric.launch()
    obs_space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)})
    actions_dim = (s["actions"],)
    world_model, actor, critic, target_critic, _ = build_agent(
        fabric, actions_dim, s["continuous"], cfg, obs_space)
    opts = [build_optimizer(o, m.parameters()) for o, m in (
        (cfg.algo.world_model.optimizer, world_model), (cfg.algo.actor.optimizer, actor),
        (cfg.algo.critic.optimizer, critic))]
    opts = fabric.setup_optimizers(*opts)
    data = make_batch(args.family, args.batch, args.length)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = []
    for i in range(args.warmup + args.reps):
        batch = {k: v.clone() for k, v in data.items()}
        t0 = clock()
        for cp, tcp in zip(critic.module.parameters(), target_critic.module.parameters(),
                           strict=True):
            tcp.data.copy_(cp.data)
        train(fabric, world_model, actor, critic, target_critic, *opts, batch, None, cfg,
              actions_dim)
        if i >= args.warmup:
            times.append((clock() - t0) * 1e3)
    print(json.dumps({"impl": "sheeprl", "family": args.family, "threads": args.threads,
                      "clock": args.clock,
                      "update_ms": statistics.median(times), "all_ms": times}))


if __name__ == "__main__":
    main()
