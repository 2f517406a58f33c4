"""Behaviour learning in imagination: actor, critic and slow critic (spec §2.5)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from blast_core.agent import graphs
from blast_core.agent.dists import OneHot, TruncNormal
from blast_core.agent.losses import actor_loss, critic_loss, imagination_weight, lambda_return
from blast_core.agent.nets import MLP
from blast_core.agent.optim import Optimizer
from blast_core.agent.perf import autocast
from blast_core.agent.rssm import State
from blast_core.agent.runtime import Runtime
from blast_core.config import Config


@dataclass(frozen=True)
class ActSpace:
    discrete: bool
    """One-hot actions (MiniGrid) or continuous actions in [-1, 1] (DMC)."""
    size: int
    """Number of discrete actions, or action dimensions."""


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Let gradients flow through `module` to its inputs without computing its weight gradients."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Behavior(nn.Module):
    """The actor, the critic and its slow copy, trained on imagined rollouts of the world model
    (`agent.behavior`, `behavior.*` in checkpoints)."""

    def __init__(self, cfg: Config, act_space: ActSpace, runtime: Runtime | None = None):
        super().__init__()
        self.cfg = cfg
        self.runtime = runtime or Runtime.of(cfg)
        a = cfg.actor
        self.dist = a.dist if a.dist != "auto" else (
            "onehot" if act_space.discrete else "trunc_normal")
        self.grad = a.grad if a.grad != "auto" else (
            "reinforce" if act_space.discrete else "dynamics")
        out = act_space.size if self.dist == "onehot" else 2 * act_space.size
        onehot = cfg.rssm.latent
        self.actor = MLP(cfg.rssm.feat, out, a.layers, a.units, onehot)
        self.critic = MLP(cfg.rssm.feat, 1, cfg.critic.layers, cfg.critic.units, onehot)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.actor_opt = Optimizer("actor", self.actor.parameters(), cfg.actor_opt)
        self.critic_opt = Optimizer("critic", self.critic.parameters(), cfg.critic_opt)
        self.graphed_imagine: graphs.Graphed | None = None
        self.graphed_step: graphs.Graphed | None = None

    def policy(self, feat: Tensor) -> OneHot | TruncNormal:
        return self._dist(self.actor(feat))

    def _dist(self, out: Tensor) -> OneHot | TruncNormal:
        if self.dist == "onehot":
            return OneHot(out)
        mean, std = out.chunk(2, -1)
        a = self.cfg.actor
        scale = 2 * torch.sigmoid((std + a.init_std) / 2) + a.min_std
        return TruncNormal(torch.tanh(mean), scale)

    def train_step(self, world_model: nn.Module, start: State,
                   is_terminal: Tensor) -> dict[str, Tensor]:
        """One actor and critic update from the B·T posterior starts (already detached).

        With `cuda_graphs` on a GPU in fp32, REINFORCE's rollout is a replayed CUDA graph; with
        the runtime's `graph_behavior` as well, the whole step is."""
        if not (self.runtime.graph_behavior and self._graphs(start["deter"], any_grad=True)):
            return self._step(world_model, start, is_terminal)
        if self.graphed_step is None:
            self.actor_opt.capturable()
            self.critic_opt.capturable()
            keys = sorted(start)

            def step(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
                return self._step(world_model, {k: inputs[k] for k in keys}, inputs["is_terminal"],
                                  in_graph=True)
            self.graphed_step = graphs.Graphed(step)
        return self.graphed_step({**start, "is_terminal": is_terminal})

    def _step(self, world_model: nn.Module, start: State, is_terminal: Tensor,
              in_graph: bool = False) -> dict[str, Tensor]:
        self.update_slow()
        with autocast(self.cfg.precision, start["deter"].device):
            loss_actor, loss_critic, metrics = self.losses(world_model, start, is_terminal,
                                                           in_graph)
        self.actor_opt.zero_grad()
        self.critic_opt.zero_grad()
        # The two losses share no parameters, so one backward pass serves both optimisers.
        (loss_actor + loss_critic).backward()
        metrics.update(**self.actor_opt.step(), **self.critic_opt.step())
        return metrics

    def losses(self, world_model: nn.Module, start: State, is_terminal: Tensor,
               in_graph: bool = False) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(actor loss, critic loss, metrics) of a rollout imagined from the starts [B, T, ...];
        `in_graph`: the caller is being captured, so the rollout must not be a graph of its own."""
        cfg = self.cfg
        start = {k: v.reshape(-1, *v.shape[2:]) for k, v in start.items()}
        outs: list[Tensor] = []
        act = self._rollout_actor(outs)
        # Only `dynamics` gradients need the imagined trajectory's graph.
        with frozen(world_model), torch.set_grad_enabled(self.grad != "reinforce"):
            if not in_graph and self._graphs(start["deter"]):
                seq, action = self._imagine_graphed(world_model, start)
            else:
                seq, action = world_model.rssm.imagine(start, act, cfg.imag_horizon)
            feat = world_model.rssm.feat(seq)                                   # [H+1, N, F]
            reward = world_model.heads["reward"](feat).squeeze(-1)     # mode of Normal(., 1)
            if cfg.pred_discount:
                disc = torch.sigmoid(world_model.heads["discount"](feat).squeeze(-1))
                # The start state's discount is known from replay.
                first = (1 - is_terminal.reshape(-1).float()) * cfg.discount
                disc = torch.cat([first[None], disc[1:]], 0)
            else:
                disc = torch.full_like(reward, cfg.discount)
            slow = self.slow_critic(feat).squeeze(-1)
            target = lambda_return(reward[:-1], slow[:-1], disc[:-1], slow[-1],
                                   cfg.discount_lambda)                # R_0 .. R_{H-1}
        weight = imagination_weight(disc)
        # π(· | z_0 .. z_{H-2}); imagine gave the actor detached features, as here.
        policy = self._dist(torch.stack(outs[:-1])) if outs else self.policy(feat[:-2].detach())
        # The action is detached inside log π (DreamerV2's fix 6504715; the project's decision).
        log_prob = policy.log_prob(action[1:-1].detach())
        entropy = policy.entropy()
        loss_actor = actor_loss(log_prob, entropy, target[1:], slow[:-2].detach(),
                                weight[:-2], self.grad, cfg.actor.grad_mix, cfg.actor.ent)
        value = self.critic(feat[:-1].detach()).squeeze(-1)
        loss_critic = critic_loss(value, target, weight[:-1])
        metrics = dict(
            actor_loss=loss_actor.detach(), critic_loss=loss_critic.detach(),
            actor_ent=entropy.detach().mean(), critic=value.detach().mean(),
            imag_reward=reward.detach().mean(), imag_return=target.detach().mean(),
        )
        return loss_actor, loss_critic, metrics

    def _rollout_actor(self, outs: list[Tensor]) -> Callable[[Tensor], Tensor]:
        """The rollout's policy. It keeps the actor's outputs, with their graph, in `outs`, so
        that the loss need not run the actor again on the same (detached) features."""

        def act(feat: Tensor) -> Tensor:
            with torch.enable_grad():
                outs.append(self.actor(feat))
            return self._dist(outs[-1]).sample()

        return act

    def _graphs(self, like: Tensor, any_grad: bool = False) -> bool:
        """Whether to graph: the whole step (`any_grad`) for either actor gradient, the rollout
        alone only without gradients through it (REINFORCE)."""
        return self.runtime.graphs(like) and (any_grad or self.grad == "reinforce")

    def _imagine_graphed(self, world_model: nn.Module, start: State) -> tuple[State, Tensor]:
        """The no-gradient rollout as a replayed CUDA graph; the loss then runs the actor again
        on the detached features (as the plain path does), outside the graph."""
        if self.graphed_imagine is None:
            def rollout(start: State) -> tuple[State, Tensor]:
                with frozen(world_model), torch.no_grad():
                    return world_model.rssm.imagine(start, lambda f: self.policy(f).sample(),
                                           self.cfg.imag_horizon)
            self.graphed_imagine = graphs.Graphed(rollout)
        return self.graphed_imagine(start)

    @torch.no_grad()
    def update_slow(self) -> None:
        """Every `slow_update` updates (update 0 included, as a hard copy) mix the critic into
        the slow critic, which gives the λ-return's values and the actor's baseline.

        The count stays on the device and the mix is a tensor (0 between copies: lerp then
        leaves every weight as it is, bit for bit), so nothing here waits for the GPU: reading
        the count on the host would hold the CPU until the world model's step has run, instead
        of queueing this step's kernels behind it."""
        every, fraction = self.cfg.critic.slow_update, self.cfg.critic.slow_fraction
        n = self.updates
        mix = torch.where(n == 0, 1.0, fraction) * (n % every == 0)
        slow = list(self.slow_critic.parameters())
        torch._foreach_lerp_(slow, list(self.critic.parameters()), [mix] * len(slow))
        self.updates += 1
