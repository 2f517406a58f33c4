"""The agent: a world model and an actor-critic, one `update` per training step, `policy` to act.

    update = world-model step -> EMA of the target encoder -> imagine from the posterior starts
             -> actor and critic steps (the slow critic is refreshed first)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from blast_core.agent.behavior import ActSpace, Behavior
from blast_core.agent.nets import preprocess
from blast_core.agent.perf import autocast
from blast_core.agent.rssm import State
from blast_core.agent.runtime import Runtime
from blast_core.agent.world_model import WorldModel
from blast_core.config import Config

__all__ = ["Agent", "ActSpace"]

PolicyState = tuple[State, Tensor]


# Checkpoints written before a module was renamed still load: (old prefix, new prefix), applied
# in order. The parameters kept their order, which the optimisers' states are matched by.
RENAMED = (
    ("wm.", "world_model."),
    ("world_model.rssm.prior_out.", "world_model.rssm.prior.out."),
    ("world_model.rssm.prior_dist.", "world_model.rssm.prior.dist."),
    ("world_model.rssm.ar_in.", "world_model.rssm.prior.ar_in."),
    ("world_model.rssm.ar_sample_in.", "world_model.rssm.prior.sample_in."),
    ("world_model.rssm.ar_gru.", "world_model.rssm.prior.gru."),
    ("world_model.rssm.made.prior_in.", "world_model.rssm.prior.inp."),
    ("world_model.rssm.made.prior_out.", "world_model.rssm.prior.out."),
    ("world_model.rssm.made.prior_dist.", "world_model.rssm.prior.dist."),
    ("world_model.rssm.made.prior_direct.", "world_model.rssm.prior.direct."),
)


def renamed(modules: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's module state under today's names (the same tensors, in the same order)."""
    out = {}
    for key, value in modules.items():
        for old, new in RENAMED:
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    return out


class Agent(nn.Module):
    def __init__(self, cfg: Config, act_space: ActSpace, device: str | torch.device = "cpu",
                 runtime: Runtime | None = None):
        """`runtime` says how it executes (default: `cfg`'s settings on `device`)."""
        super().__init__()
        self.cfg = cfg
        self.act_space = act_space
        self.runtime = runtime or Runtime.of(cfg, device)
        self.device = torch.device(self.runtime.device)
        self.world_model = WorldModel(cfg, act_space.size, self.runtime)
        self.behavior = Behavior(cfg, act_space, self.runtime)
        self.to(self.device)

    def set_runtime(self, runtime: Runtime) -> None:
        """Execute as `runtime` from now on (the device stays the agent's)."""
        self.runtime = self.world_model.runtime = self.behavior.runtime = runtime

    def optimizers(self) -> dict[str, Any]:
        opts = {"model": self.world_model.opt, "actor": self.behavior.actor_opt,
                "critic": self.behavior.critic_opt}
        if self.world_model.probe_opt is not None:
            opts["probe"] = self.world_model.probe_opt
        return opts

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One update on a batch of [B, T] sequences (see the replay's step format)."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self._check(batch)
        start, metrics = self.world_model.train_step(batch)
        metrics.update(self.behavior.train_step(self.world_model, start, batch["is_terminal"]))
        # One device sync for all metrics.
        names = list(metrics)
        values = torch.stack([metrics[k].float().reshape(()) for k in names]).tolist()
        return dict(zip(names, values, strict=True))

    def _check(self, batch: dict[str, Tensor]) -> None:
        B, T = batch["image"].shape[:2]
        size = self.cfg.env.size
        assert batch["image"].shape == (B, T, size, size, 3), batch["image"].shape
        assert batch["image"].dtype == torch.uint8
        assert batch["action"].shape == (B, T, self.act_space.size), batch["action"].shape
        for key in ("reward", "is_first", "is_terminal"):
            assert batch[key].shape == (B, T), (key, batch[key].shape)

    @torch.no_grad()
    def policy(self, obs: dict[str, Tensor], state: PolicyState | None,
               mode: Literal["train", "eval"] = "train") -> tuple[Tensor, PolicyState]:
        """Filter the posterior with the newest frame and pick an action: a sample in `train`
        mode, the distribution's mode in `eval`. BatchNorm uses running statistics here."""
        self.eval()
        image = obs["image"].to(self.device)
        is_first = obs["is_first"].to(self.device)
        n = image.shape[0]
        if state is None:
            state = (self.world_model.rssm.initial(n, self.device),
                     torch.zeros(n, self.act_space.size, device=self.device))
        latent, prev_action = state
        with autocast(self.cfg.precision, self.device):
            embed = self.world_model.acting_encoder()(preprocess(image))
            latent = self.world_model.rssm.obs_step(latent, prev_action, embed, is_first,
                                           sample=mode == "train")
            dist = self.behavior.policy(self.world_model.rssm.feat(latent))
            action = dist.sample() if mode == "train" else dist.mode()
        return action, (latent, action)

    def checkpoint_state(self) -> dict[str, Any]:
        """Every network (target encoder, slow critic and BatchNorm statistics included) and every
        optimiser; plain containers of tensors, loadable with torch.load(weights_only=True)."""
        return {
            "modules": self.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers().items()},
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(renamed(state["modules"]))
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        # Loading replaced the optimisers' state tensors, which a captured graph would still
        # read: capture again.
        self.world_model.graphed_step = None
        self.behavior.graphed_imagine = self.behavior.graphed_step = None

    @property
    def updates(self) -> int:
        return int(self.behavior.updates)
