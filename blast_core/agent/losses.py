"""Losses and returns as pure functions (spec §2.4, §2.5), each tested against a naive reference."""

from __future__ import annotations

import torch
from torch import Tensor

from blast_core.agent.dists import kl_onehot


def kl_loss(post: Tensor, prior: Tensor, balance: float, free: float,
            free_avg: bool) -> tuple[Tensor, Tensor]:
    """KL balancing with free nats (DreamerV2 with forward=False).

    post, prior: logits [..., stoch, discrete]. Returns (loss, KL(post || prior) per element).

        loss = balance · max(mean KL(sg(post) || prior), free)        trains the prior
             + (1 − balance) · max(mean KL(post || sg(prior)), free)  trains the posterior

    With free_avg the clamp applies after averaging over batch and time, so the whole term has
    no gradient while the mean KL is below `free`. balance = 1 (+SG) sends no gradient to the
    posterior. balance = 0.5 is DreamerV2's special case: one undivided term.
    """
    def clamp(value: Tensor) -> Tensor:
        if free_avg:
            return value.mean().clamp_min(free)
        return value.clamp_min(free).mean()

    if balance == 0.5:
        value = kl_onehot(post, prior)
        return clamp(value), value
    value = kl_onehot(post, prior.detach())
    loss_post = clamp(value)
    loss_prior = clamp(kl_onehot(post.detach(), prior))
    return balance * loss_prior + (1 - balance) * loss_post, value


def lambda_return(reward: Tensor, value: Tensor, discount: Tensor, bootstrap: Tensor,
                  lambda_: float) -> Tensor:
    """TD(λ) returns over time-major [T, N] inputs:

        R_T = bootstrap
        R_t = r_t + d_t · ((1 − λ) · v_{t+1} + λ · R_{t+1})

    with v_{t+1} = value[t+1] (bootstrap at t = T−1). DreamerV2's alignment: r_t and d_t are the
    heads at state t (the reward received on arriving in state t), not the step after it.
    """
    next_value = torch.cat([value[1:], bootstrap[None]], 0)
    inputs = reward + discount * next_value * (1 - lambda_)
    returns = []
    last = bootstrap
    for t in reversed(range(reward.shape[0])):
        last = inputs[t] + discount[t] * lambda_ * last
        returns.append(last)
    return torch.stack(returns[::-1], 0)


def imagination_weight(discount: Tensor) -> Tensor:
    """w_0 = 1, w_t = ∏_{k<t} d_k over [H+1, N] discounts; no gradient."""
    ones = torch.ones_like(discount[:1])
    return torch.cumprod(torch.cat([ones, discount[:-1]], 0), 0).detach()


def critic_loss(value: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Weighted Normal(value, 1) negative log-likelihood of sg(target), up to a constant.

    value, target, weight: [H, N] for states 0..H−1."""
    return (weight * 0.5 * (value - target.detach()) ** 2).mean()


def actor_loss(log_prob: Tensor, entropy: Tensor, target: Tensor, baseline: Tensor,
               weight: Tensor, grad: str, mix: float, ent_scale: float) -> Tensor:
    """The policy objective over states 0..H−2 ([H−1, N] each):

        states:   z_0      z_1   ...  z_{H−2}
        action:   a_1      a_2   ...  a_{H−1}     (taken at z_t, so log π(a_{t+1} | z_t))
        target:   R_1      R_2   ...  R_{H−1}
        baseline: v'(z_0)  ...        v'(z_{H−2}) (the slow critic)

    reinforce: log π · sg(R − v');  dynamics: R itself (gradient through the model);
    both: mix · dynamics + (1 − mix) · reinforce. Plus ent_scale · entropy.
    """
    reinforce = log_prob * (target - baseline).detach()
    if grad == "reinforce":
        objective = reinforce
    elif grad == "dynamics":
        objective = target
    elif grad == "both":
        objective = mix * target + (1 - mix) * reinforce
    else:
        raise ValueError(f"unknown actor gradient {grad!r}")
    objective = objective + ent_scale * entropy
    return -(weight * objective).mean()
