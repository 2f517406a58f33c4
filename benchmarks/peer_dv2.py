"""Differential check of blast's DreamerV2 against sheeprl's, on blast's own MiniGrid env.

sheeprl (PyPI) is the peer: its code is imported and called, never copied, and it is never a
dependency of blast. `benchmarks/peer_setup.sh` makes `.venv-peer` with both (the `peer` extra);
run this file with `.venv-peer/bin/python`.

Four commands, each printing (and with --json writing) what it measured:

    fixed    Train both world models from scratch on the *same* batches, cut from one fixed
             replay of uniform random play in blast's env, and compare them on held-out windows
             as they train: the loss terms, the KL, the prior and posterior entropies, and the
             reward head's prediction on goal, collision and other steps. The initial weights
             differ (each library initialises its own); the data, sizes and losses are the same.
    train    sheeprl's own training loop (its replay, its schedule, its acting) on blast's env,
             with blast's `dv2` settings at a preset translated into sheeprl's config; writes
             sheeprl's checkpoints every --eval-every steps and every finished episode's score.
    evaluate Greedy episodes of each checkpoint of a `train` run, scored as blast scores them
             (goals - collisions per 100-step episode): blast's own evaluation, for the peer.
    probe    blast's world model of a run's checkpoint, measured as `fixed` measures (runs with
             blast's own venv too: it needs no sheeprl).
    compare  The greedy scores of blast's `dv2` runs of an experiment (from its database) beside
             the peer's `evaluate` files, per step and as final scores (mean of the last three).

The peer's side of the check at a preset, 3 seeds (about an hour per seed on one core):

    for s in 0 1 2; do
      .venv-peer/bin/python benchmarks/peer_dv2.py train --seed $s --out peer/s$s
      .venv-peer/bin/python benchmarks/peer_dv2.py evaluate --out peer/s$s --json peer/s$s.json
    done
    .venv-peer/bin/python benchmarks/peer_dv2.py compare --experiment figure3-cpu peer/s*.json

A `train` stopped midway (its machine gone, Ctrl-C) goes on from its latest checkpoint, replay
included: the same command with `--resume`. The steps after that checkpoint are played again.

sheeprl has no reward-loss scale (the paper's MiniGrid uses 100); it is added from outside by
wrapping `reconstruction_loss`, which returns the reward term separately. Everything else is
sheeprl's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blast_core.config import make_config
from blast_core.config.tree import parse_overrides
from blast_core.envs import make

ENV = "minigrid:unmodified"


# --- blast's env, as sheeprl sees it -------------------------------------------------------------


class BlastMiniGrid:
    """Hydra target for sheeprl's `env.wrapper`: blast's env, unchanged (64x64x3 uint8, three
    actions, 100-step episodes). Each finished episode's score goes to $PEER_SCORES (JSONL)."""

    def __new__(cls, seed: int | None = None, **_: Any) -> Any:
        import gymnasium as gym

        class Scored(gym.Wrapper):
            def step(self, action: Any) -> Any:
                obs, reward, terminated, truncated, info = self.env.step(int(np.asarray(action)))
                if (terminated or truncated) and os.environ.get("PEER_SCORES"):
                    with open(os.environ["PEER_SCORES"], "a") as f:
                        f.write(json.dumps({"time": time.time(), "score": info["score"],
                                            "return": info["return"]}) + "\n")
                return obs, reward, terminated, truncated, info

        return Scored(make(ENV, seed or 0, make_config(ENV).env))


# --- blast's config -> sheeprl's overrides ------------------------------------------------------


def blast_config(preset: str, sets: list[str]) -> Any:
    return make_config(ENV, "dv2", preset, parse_overrides(sets))


def sheeprl_overrides(cfg: Any) -> list[str]:
    """sheeprl's Hydra overrides for the sizes, losses and optimisers of blast's `cfg`."""
    wm = "algo.world_model"
    assert cfg.heads.units == cfg.actor.units == cfg.critic.units, "sheeprl has one MLP width"
    assert cfg.heads.layers == cfg.actor.layers == cfg.critic.layers, "and one MLP depth"
    return [
        "exp=dreamer_v2", "algo.cnn_keys.encoder=[rgb]", "algo.mlp_keys.encoder=[]",
        f"algo.per_rank_batch_size={cfg.dataset.batch}",
        f"algo.per_rank_sequence_length={cfg.dataset.length}",
        f"algo.horizon={cfg.imag_horizon}", f"algo.gamma={cfg.discount}",
        f"algo.lmbda={cfg.discount_lambda}",
        f"algo.dense_units={cfg.heads.units}", f"algo.mlp_layers={cfg.heads.layers}",
        "algo.layer_norm=False",
        f"{wm}.encoder.cnn_channels_multiplier={cfg.encoder.depth}",
        f"{wm}.recurrent_model.recurrent_state_size={cfg.rssm.deter}",
        f"{wm}.transition_model.hidden_size={cfg.rssm.hidden}",
        f"{wm}.representation_model.hidden_size={cfg.rssm.hidden}",
        f"{wm}.stochastic_size={cfg.rssm.stoch}", f"{wm}.discrete_size={cfg.rssm.discrete}",
        f"{wm}.kl_balancing_alpha={cfg.kl.balance}", f"{wm}.kl_free_nats={cfg.kl.free}",
        f"{wm}.kl_free_avg={cfg.kl.free_avg}", f"{wm}.kl_regularizer={cfg.loss_scales.kl}",
        f"{wm}.use_continues={cfg.pred_discount}", f"{wm}.clip_gradients={cfg.model_opt.clip}",
        f"{wm}.optimizer.lr={cfg.model_opt.lr}", f"{wm}.optimizer.eps={cfg.model_opt.eps}",
        f"{wm}.optimizer.weight_decay={cfg.model_opt.wd}",
        f"algo.actor.optimizer.lr={cfg.actor_opt.lr}",
        f"algo.critic.optimizer.lr={cfg.critic_opt.lr}",
        f"algo.actor.ent_coef={cfg.actor.ent}",
        f"algo.critic.per_rank_target_network_update_freq={cfg.critic.slow_update}",
        f"env.clip_rewards={cfg.clip_rewards == 'tanh'}", "algo.compile.enabled=False",
    ]


def scale_reward_loss(scale: float) -> None:
    """sheeprl lacks `loss_scales.reward`: add (scale - 1) x its reward term to its total."""
    from sheeprl.algos.dreamer_v2 import dreamer_v2

    inner = dreamer_v2.reconstruction_loss

    def scaled(*args: Any, **kwargs: Any) -> Any:
        total, kl, state, reward, obs, cont = inner(*args, **kwargs)
        return total + (scale - 1.0) * reward, kl, state, reward, obs, cont

    dreamer_v2.reconstruction_loss = scaled


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf
    from sheeprl.utils.utils import dotdict

    with initialize_config_module(version_base="1.3", config_module="sheeprl.configs"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return dotdict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


# --- a fixed replay of random play ---------------------------------------------------------------


def collect(steps: int, seed: int) -> dict[str, np.ndarray]:
    """`steps` uniform random agent steps in blast's env, in blast's step format, plus `event`:
    +1 on a step that reached the goal, -1 on a collision, 0 otherwise."""
    env = make(ENV, seed, make_config(ENV).env)
    rng = np.random.default_rng(seed)
    keys = ("image", "action", "reward", "is_first", "event")
    out: dict[str, list] = {k: [] for k in keys}
    obs, info = env.reset()
    last = info
    zero = np.zeros(3, np.float32)
    out["image"].append(obs), out["action"].append(zero), out["reward"].append(0.0)
    out["is_first"].append(True), out["event"].append(0)
    for _ in range(steps):
        a = int(rng.integers(3))
        obs, reward, _, truncated, info = env.step(a)
        event = (info["goals"] - last["goals"]) - (info["collisions"] - last["collisions"])
        out["image"].append(obs), out["action"].append(np.eye(3, dtype=np.float32)[a])
        out["reward"].append(reward), out["is_first"].append(False), out["event"].append(event)
        last = info
        if truncated:
            obs, last = env.reset()
            out["image"].append(obs), out["action"].append(zero), out["reward"].append(0.0)
            out["is_first"].append(True), out["event"].append(0)
    env.close()
    return {k: np.asarray(v) for k, v in out.items()}


def episodes(data: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    starts = list(np.flatnonzero(data["is_first"])) + [len(data["is_first"])]
    return [(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True) if b - a > 1]


def windows(data: dict[str, np.ndarray], eps: list[tuple[int, int]], n: int, length: int,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n windows of `length` steps from whole episodes: {key: [n, length, ...]}; windows start
    on an episode's first step or inside it, never across two episodes."""
    picks = []
    for _ in range(n):
        a, b = eps[rng.integers(len(eps))]
        start = a + rng.integers(b - a - length + 1)
        picks.append(slice(start, start + length))
    return {k: np.stack([v[s] for s in picks]) for k, v in data.items()}


def to_blast(w: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    first = w["is_first"].copy()
    first[:, 0] = True
    return {"image": torch.as_tensor(w["image"]), "action": torch.as_tensor(w["action"]),
            "reward": torch.as_tensor(w["reward"], dtype=torch.float32),
            "is_first": torch.as_tensor(first), "is_terminal": torch.zeros(first.shape, dtype=bool)}


def to_sheeprl(w: dict[str, np.ndarray], clip: bool) -> dict[str, torch.Tensor]:
    """sheeprl's time-major [T, B, ...] float batch (images 0..255, channels first)."""
    def tm(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.swapaxes(x, 0, 1).copy()).float()

    reward = np.tanh(w["reward"]) if clip else w["reward"]
    zeros = tm(np.zeros(w["reward"].shape))[..., None]
    first = w["is_first"].copy()
    first[:, 0] = True
    return {"rgb": tm(w["image"]).permute(0, 1, 4, 2, 3).contiguous(), "actions": tm(w["action"]),
            "rewards": tm(reward)[..., None], "is_first": tm(first)[..., None],
            "terminated": zeros, "truncated": zeros.clone()}


# --- the two world models, measured the same way -------------------------------------------------


class BlastSide:
    name = "blast"

    def __init__(self, cfg: Any, seed: int) -> None:
        from blast_core.agent import Agent
        from blast_core.agent.behavior import ActSpace

        torch.manual_seed(seed)
        self.cfg = cfg
        self.agent = Agent(cfg, ActSpace(discrete=True, size=3))

    def step(self, w: dict[str, np.ndarray]) -> None:
        self.agent.update(to_blast(w))

    @torch.no_grad()
    def measure(self, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from blast_core.agent.dists import kl_onehot
        from blast_core.agent.nets import preprocess

        wm = self.agent.world_model
        wm.eval()
        b = to_blast(w)
        post = wm.rssm.observe(wm.encoder(preprocess(b["image"])), b["action"], b["is_first"])
        prior, _ = wm.rssm.prior(post["deter"], None)
        feat = wm.rssm.feat(post)
        image = wm.decoder(feat)
        target = preprocess(b["image"])
        return per_step(image_nll=0.5 * ((image - target) ** 2).sum((-3, -2, -1)),
                        reward=wm.heads["reward"](feat).squeeze(-1),
                        kl=kl_onehot(post["logits"], prior),
                        prior_logits=prior, post_logits=post["logits"])


class SheeprlSide:
    name = "sheeprl"

    def __init__(self, cfg: Any, seed: int) -> None:
        import gymnasium as gym
        from lightning.fabric import Fabric
        from sheeprl.algos.dreamer_v2.agent import build_agent
        from sheeprl.algos.dreamer_v2.utils import build_optimizer

        torch.manual_seed(seed)
        self.bcfg = cfg
        self.cfg = compose(sheeprl_overrides(cfg) + ["env=dummy", "metric.log_level=0"])
        self.fabric = Fabric(devices=1, accelerator="cpu", precision="32-true")
        space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)})
        self.world_model, self.actor, self.critic, self.target_critic, _ = build_agent(
            self.fabric, (3,), False, self.cfg, space)
        opts = [build_optimizer(o, m.parameters()) for o, m in (
            (self.cfg.algo.world_model.optimizer, self.world_model), (self.cfg.algo.actor.optimizer,
                                                             self.actor),
            (self.cfg.algo.critic.optimizer, self.critic))]
        self.opts = self.fabric.setup_optimizers(*opts)
        self.updates = 0

    def step(self, w: dict[str, np.ndarray]) -> None:
        from sheeprl.algos.dreamer_v2.dreamer_v2 import train

        if self.updates % self.cfg.algo.critic.per_rank_target_network_update_freq == 0:
            for cp, tcp in zip(self.critic.module.parameters(),
                               self.target_critic.module.parameters(), strict=True):
                tcp.data.copy_(cp.data)
        train(self.fabric, self.world_model, self.actor, self.critic, self.target_critic,
              *self.opts,
              to_sheeprl(w, self.bcfg.clip_rewards == "tanh"), None, self.cfg, (3,))
        self.updates += 1

    @torch.no_grad()
    def measure(self, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from blast_core.agent.dists import kl_onehot

        c = self.cfg.algo.world_model
        data = to_sheeprl(w, False)
        T, B = data["actions"].shape[:2]
        embed = self.world_model.encoder({"rgb": data["rgb"] / 255 - 0.5})
        h = torch.zeros(1, B, c.recurrent_model.recurrent_state_size)
        z = torch.zeros(1, B, c.stochastic_size, c.discrete_size)
        hs, zs, post_logits, prior_logits = [], [], [], []
        for t in range(T):
            h, z, _, q, p = self.world_model.rssm.dynamic(z, h, data["actions"][t:t + 1],
                                                 embed[t:t + 1], data["is_first"][t:t + 1])
            hs.append(h), zs.append(z), post_logits.append(q), prior_logits.append(p)
        shape = (T, B, c.stochastic_size, c.discrete_size)
        z = torch.cat(zs).reshape(T, B, -1)
        latent = torch.cat([z, torch.cat(hs)], -1)
        image = self.world_model.observation_model(latent)["rgb"]
        q = torch.cat(post_logits).reshape(shape)
        p = torch.cat(prior_logits).reshape(shape)

        def bm(x: torch.Tensor) -> torch.Tensor:
            return x.transpose(0, 1)

        nll = 0.5 * ((image - (data["rgb"] / 255 - 0.5)) ** 2).sum((-3, -2, -1))
        reward = self.world_model.reward_model(latent).squeeze(-1)
        return per_step(image_nll=bm(nll), reward=bm(reward),
                        kl=bm(kl_onehot(q, p)), prior_logits=bm(p), post_logits=bm(q))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum((-2, -1))


def per_step(*, image_nll: torch.Tensor, reward: torch.Tensor, kl: torch.Tensor,
             prior_logits: torch.Tensor, post_logits: torch.Tensor) -> dict[str, np.ndarray]:
    return {"image_nll": image_nll.numpy(), "reward_pred": reward.numpy(), "kl": kl.numpy(),
            "prior_ent": entropy(prior_logits).numpy(), "post_ent": entropy(post_logits).numpy()}


def summarize(m: dict[str, np.ndarray], w: dict[str, np.ndarray], clip: bool) -> dict[str, float]:
    target = np.tanh(w["reward"]) if clip else w["reward"]
    ev = w["event"]
    out = {k: float(m[k].mean()) for k in ("image_nll", "kl", "prior_ent", "post_ent")}
    out["reward_mse"] = float(((m["reward_pred"] - target) ** 2).mean())
    for name, mask in (("goal", ev > 0), ("collision", ev < 0), ("other", ev == 0)):
        out[f"reward_pred_{name}"] = float(m["reward_pred"][mask].mean()) if mask.any() else None
        out[f"reward_true_{name}"] = float(target[mask].mean()) if mask.any() else None
    return out


def fixed(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    cfg = blast_config(args.preset, args.set)
    scale_reward_loss(cfg.loss_scales.reward)
    data = collect(args.collect, args.data_seed)
    eps = episodes(data)
    held = windows(data, eps, args.held_out, cfg.dataset.length, np.random.default_rng(999))
    n_goal, n_coll = int((data["event"] > 0).sum()), int((data["event"] < 0).sum())
    print(f"replay: {args.collect} random steps, {n_goal} goals, {n_coll} collisions; held-out "
          f"{args.held_out} windows with {(held['event'] > 0).sum()} goal and "
          f"{(held['event'] < 0).sum()} collision steps", flush=True)
    clip = cfg.clip_rewards == "tanh"
    result: dict[str, Any] = {"preset": args.preset, "set": args.set, "updates": args.updates,
                              "replay": {"steps": args.collect, "goals": n_goal,
                                         "collisions": n_coll}, "curves": {}}
    for side_cls in (BlastSide, SheeprlSide):
        for seed in range(args.seeds):
            side = side_cls(cfg, seed)
            rng = np.random.default_rng(1000 + seed)  # the same batches for both sides
            curve, t0 = [], time.perf_counter()
            for u in range(args.updates + 1):
                if u % args.every == 0:
                    row = {"updates": u} | summarize(side.measure(held), held, clip)
                    curve.append(row)
                    print(f"{side.name} seed {seed} " + " ".join(
                        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()), flush=True)
                if u < args.updates:
                    side.step(windows(data, eps, cfg.dataset.batch, cfg.dataset.length, rng))
            result["curves"][f"{side.name}/{seed}"] = curve
            result.setdefault("seconds", {})[f"{side.name}/{seed}"] = time.perf_counter() - t0
    return result


# --- sheeprl's own loop on blast's env ----------------------------------------------------------


def train(args: argparse.Namespace) -> dict[str, Any]:
    cfg = blast_config(args.preset, args.set)
    scale_reward_loss(cfg.loss_scales.reward)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PEER_SCORES"] = str(out / "scores.jsonl")
    sched = cfg.schedule
    overrides = sheeprl_overrides(cfg) + [
        "env=gym", f"env.id={ENV}", "env.wrapper._target_=peer_dv2.BlastMiniGrid",
        "env.num_envs=1", "env.sync_env=True", "env.capture_video=False",
        "env.max_episode_steps=null", f"algo.total_steps={args.steps or sched.steps}",
        f"algo.learning_starts={sched.prefill}", f"algo.replay_ratio={1 / sched.train_every}",
        f"algo.per_rank_pretrain_steps={sched.pretrain}",
        # The replay holds every step of the run (sheeprl preallocates it as a memmap).
        f"buffer.size={min(cfg.replay.capacity, args.steps or sched.steps)}",
        # The replay is saved with each checkpoint (a reference to its memmap), so that a run
        # stopped with its machine can go on (`--resume`) without filling a new one.
        "buffer.checkpoint=True",
        f"buffer.prioritize_ends={cfg.replay.prioritize_ends}",
        f"checkpoint.every={args.eval_every}", "checkpoint.save_last=True",
        # Every checkpoint is evaluated afterwards: keep them all (sheeprl keeps 5 by default).
        "checkpoint.keep_last=null",
        f"seed={args.seed}", "fabric.accelerator=cpu", "fabric.devices=1",
        "metric.log_level=1", f"metric.log_every={sched.log_every}", "algo.run_test=False",
        f"root_dir={out}", "run_name=run", "model_manager.disabled=True",
    ]
    if args.resume:
        ckpts = sorted(out.rglob("ckpt_*.ckpt"), key=lambda p: int(p.stem.split("_")[1]))
        if not ckpts:
            raise SystemExit(f"--resume: no checkpoint under {out}")
        overrides.append(f"checkpoint.resume_from={ckpts[-1]}")
        print(f"resuming from {ckpts[-1]}", flush=True)
    else:
        (out / "overrides.json").write_text(json.dumps(overrides, indent=1))
    sys.path.insert(0, str(Path(__file__).parent))  # for the Hydra target above
    torch.set_num_threads(args.threads)
    from sheeprl.cli import run

    sys.argv = ["sheeprl", *overrides]
    t0 = time.perf_counter()
    run()
    return {"out": str(out), "seconds": time.perf_counter() - t0}


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Greedy episodes of every checkpoint under --out, with blast's env and scoring."""
    import gymnasium as gym
    from lightning.fabric import Fabric
    from sheeprl.algos.dreamer_v2.agent import build_agent

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides = json.loads((out / "overrides.json").read_text())
    cfg = compose([o for o in overrides if not o.startswith("env.")] + ["env=dummy"])
    fabric = Fabric(devices=1, accelerator="cpu", precision="32-true")
    space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)})
    ckpts = sorted(out.rglob("ckpt_*.ckpt"), key=lambda p: int(p.stem.split("_")[1]))
    scores = {}
    for ckpt in ckpts:
        step = int(ckpt.stem.split("_")[1])
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        *_, player = build_agent(fabric, (3,), False, cfg, space, state["world_model"],
                                 state["actor"])
        env = make(ENV, args.seed, make_config(ENV).env)
        got = []
        for _ in range(args.episodes):
            obs, info = env.reset()
            player.num_envs = 1
            player.init_states()
            done = False
            while not done:
                rgb = torch.as_tensor(obs).permute(2, 0, 1)[None, None].float() / 255 - 0.5
                acts = player.get_actions({"rgb": rgb}, greedy=True)
                obs, _, _, done, info = env.step(int(acts[0].argmax(-1).item()))
            got.append(info["score"])
        scores[step] = statistics.mean(got)
        print(f"step {step}: greedy score {scores[step]:+.2f} ({got})", flush=True)
    return {"out": str(out), "episodes": args.episodes, "scores": scores}


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """blast's world model of a run's checkpoint, measured on held-out windows of random play
    as `fixed` measures both sides (the reward head on goal and collision steps, KL, entropies).
    The run's config: its stored config.yaml, beside its checkpoints folder."""
    import yaml

    from blast_core import config as C
    from blast_core.config import tree as T
    from blast_core.run.checkpoint import Checkpoints

    torch.set_num_threads(args.threads)
    path = Path(args.checkpoint)
    cfg = T.from_dict(yaml.safe_load((path.parent.parent / "config.yaml").read_text()), C.Config)
    side = BlastSide(cfg, 0)
    side.agent.load_checkpoint_state(Checkpoints(path.parent).load(path)["agent"])
    data = collect(args.collect, args.data_seed)
    held = windows(data, episodes(data), args.held_out, cfg.dataset.length,
                   np.random.default_rng(999))
    out = {"checkpoint": str(path)} | summarize(side.measure(held), held,
                                                 cfg.clip_rewards == "tanh")
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in out.items()))
    return out


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """blast's dv2 greedy scores per evaluation step beside the peer's, and the final scores."""
    from blast_core.store import Store, db_url

    with Store.open_existing(db_url(args.db, args.results)) as store:
        frame = store.metrics_frame(args.experiment, ["eval_score"])
    frame = frame[(frame["rung"] == "dv2") & (frame["env"] == ENV)]
    if args.until:  # runs longer than the preset's, read as far as a run at the preset goes
        frame = frame[frame["step"] <= args.until]
    sides: dict[str, dict[int, dict[int, float]]] = {"blast": {}, "sheeprl": {}}
    for (seed, step), value in frame.groupby(["seed", "step"])["value"].mean().items():
        sides["blast"].setdefault(int(seed), {})[int(step)] = float(value)
    for i, path in enumerate(args.peer):
        scores = json.loads(Path(path).read_text())["scores"]
        sides["sheeprl"][i] = {int(k): float(v) for k, v in scores.items()}

    def final(runs: dict[int, dict[int, float]]) -> list[float]:
        return [statistics.mean([v for _, v in sorted(r.items())[-3:]]) for r in runs.values()]

    steps = sorted({s for runs in sides.values() for r in runs.values() for s in r})
    print(f"{'step':>7}  {'blast dv2':>16}  {'sheeprl dv2':>16}")
    for step in steps:
        cells = []
        for runs in sides.values():
            got = [r[step] for r in runs.values() if step in r]
            cells.append(f"{statistics.mean(got):+6.2f} ({len(got)} runs)" if got else "-")
        print(f"{step:>7}  {cells[0]:>16}  {cells[1]:>16}")
    out = {name: final(runs) for name, runs in sides.items()}
    for name, scores in out.items():
        if scores:
            print(f"final {name}: " + ", ".join(f"{v:+.2f}" for v in scores))
    return {"experiment": args.experiment, "until": args.until or None, "final": out,
            "curves": sides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("checkpoint", help="a run's checkpoints/ckpt-*.pt")
    p.add_argument("--collect", type=int, default=3000, help="random steps of held-out play")
    p.add_argument("--data-seed", type=int, default=5)
    p.add_argument("--held-out", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the result here")
    p = sub.add_parser("compare")
    p.add_argument("peer", nargs="*", help="the peer's `evaluate --json` files, one per seed")
    p.add_argument("--experiment", required=True, help="blast's experiment with the dv2 runs")
    p.add_argument("--until", type=int, default=0,
                   help="read blast's runs up to this step (a longer run read as a shorter one)")
    p.add_argument("--results", help="blast's results root")
    p.add_argument("--db", help="blast's database URL")
    p.add_argument("--json", help="also write the result here")
    for name in ("fixed", "train", "evaluate"):
        p = sub.add_parser(name)
        p.add_argument("--preset", default="cpu")
        p.add_argument("--set", action="append", default=[], help="a blast --set override")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--json", help="also write the result here")
        p.add_argument("--seed", type=int, default=0)
        if name == "fixed":
            p.add_argument("--collect", type=int, default=10_000, help="random steps of replay")
            p.add_argument("--data-seed", type=int, default=0)
            p.add_argument("--held-out", type=int, default=64, help="windows measured")
            p.add_argument("--updates", type=int, default=1000)
            p.add_argument("--every", type=int, default=250)
            p.add_argument("--seeds", type=int, default=1, help="initialisations per side")
        else:
            p.add_argument("--out", required=True, help="the run's folder")
        if name == "train":
            p.add_argument("--steps", type=int, default=0, help="agent steps (default: preset's)")
            p.add_argument("--eval-every", type=int, default=2500)
            p.add_argument("--resume", action="store_true",
                           help="go on from the latest checkpoint under --out (a stopped run)")
        if name == "evaluate":
            p.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    result = {"fixed": fixed, "train": train, "evaluate": evaluate, "probe": probe,
              "compare": compare}[args.cmd](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
