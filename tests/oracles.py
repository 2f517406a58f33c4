"""The plain implementations the agent's fast kernels are checked against (test oracles).

The model code has one implementation of each step, the fast one. Here is what each computes
written the obvious way: the encoder and decoder as torch's layers in NCHW, dense layers on feat
as full matmuls, the posterior chain as `obs_step` in a loop, the AR prior one group at a time
through its layers, the masked AR network as one whole masked pass per group, and the actor run
again over the rollout's features for its loss. `plain_path()` swaps them in for the enclosed
code, so a whole update can run both ways (`tests/test_fast_path.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import torch
from torch import Tensor

from blast_core.agent import behavior, made, nets, priors, rssm
from blast_core.agent.dists import OneHot

State = dict[str, Tensor]


def encoder_forward(self: nets.Encoder, image: Tensor) -> Tensor:
    lead = image.shape[:-3]
    return self.net(image.reshape(-1, *image.shape[-3:])).reshape(*lead, -1)


def decoder_forward(self: nets.Decoder, feat: Tensor) -> Tensor:
    lead = feat.shape[:-1]
    x = self.net(self.linear(feat).reshape(-1, self.depth, 1, 1))
    return x.reshape(*lead, *x.shape[1:]).float()


def observe(self: rssm.RSSM, embed: Tensor, action: Tensor, is_first: Tensor,
            state: State | None = None) -> State:
    state = state or self.initial(embed.shape[0], embed.device)
    states = []
    for t in range(embed.shape[1]):
        state = self.obs_step(state, action[:, t], embed[:, t], is_first[:, t])
        states.append(state)
    return {k: torch.stack([s[k] for s in states], 1) for k in states[0]}


def ar_forced(self: priors.GRUPrior, h: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher forcing one group at a time."""
    teacher = teacher.reshape(h.shape[0], self.cfg.ar_steps, -1)
    state, logits = h, []
    for i in range(self.cfg.ar_steps):
        logits.append(self.head(state, i))
        if i + 1 < self.cfg.ar_steps:  # the last GRU update would be discarded
            state = self.gru(self.sample_in(teacher[:, i]), state)
    return torch.cat(logits, 1), teacher


def ar_sampled(self: priors.GRUPrior, h: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
    """Each group drawn, then fed back through `sample_in` and the AR GRU."""
    c = self.cfg
    k = c.stoch // c.ar_steps
    state, logits, stochs = h, [], []
    for i in range(c.ar_steps):
        dist = OneHot(self.head(state, i).reshape(-1, k, c.discrete), dims=1)
        z = dist.sample() if sample else dist.mode()
        logits.append(dist.logits)
        stochs.append(z)
        if i + 1 < c.ar_steps:
            state = self.gru(self.sample_in(z.reshape(-1, k * c.discrete)), state)
    return torch.cat(logits, 1), torch.cat(stochs, 1)


def made_group_logits(self: made.MADEPrior, h: Tensor, stochs: list[Tensor]) -> Iterator[Tensor]:
    """The whole masked pass per group, later groups' inputs zero (unseen)."""
    for i in range(self.groups):
        known = torch.cat([*stochs, h.new_zeros(h.shape[0], (self.groups - i) * self.width)], 1)
        yield self.forced(h, known)[0][:, i * self.width:(i + 1) * self.width]


def rollout_actor(self: behavior.Behavior, outs: list[Tensor]):  # noqa: ANN201
    """Sample from the policy and keep nothing: the loss runs the actor again."""
    return lambda feat: self.policy(feat).sample()


@contextlib.contextmanager
def plain_path(plain: bool = True) -> Iterator[None]:
    """Run the enclosed code on the oracles above (with `plain` false, as it is)."""
    swaps = [
        (nets.Encoder, "forward", encoder_forward),
        (nets.Decoder, "forward", decoder_forward),
        (nets, "gather_ok", lambda x: False),
        (rssm, "gather_ok", lambda x: False),
        (rssm.RSSM, "observe", observe),
        (priors.GRUPrior, "forced", ar_forced),
        (priors.GRUPrior, "sampled", ar_sampled),
        (made.MADEPrior, "_group_logits", made_group_logits),
        (behavior.Behavior, "_rollout_actor", rollout_actor),
    ]
    with contextlib.ExitStack() as stack:
        for owner, name, oracle in swaps if plain else []:
            stack.enter_context(mock.patch.object(owner, name, oracle))
        yield
