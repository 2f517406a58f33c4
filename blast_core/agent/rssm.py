"""The recurrent state-space model with discrete latents (spec §2.3) and BLAST's autoregressive
prior (spec §3.6).

A state is a dict of tensors: `stoch` (straight-through one-hot z, [..., stoch, discrete]),
`logits` (of the distribution z was drawn from) and `deter` (h, [..., deter]).

    h_t = GRU(deter_in([z_{t-1}, a_{t-1}]), h_{t-1})     the deterministic step
    prior  p(z_t | h_t)                                   independent, or autoregressive over groups
    post   q(z_t | h_t, e_t)                              e_t = encoder(x_t)

The action stored at index t is the one that led into x_t, so the step into t uses action[t].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blast_core.agent.dists import OneHot
from blast_core.agent.made import MADEPrior
from blast_core.agent.nets import LayerNormGRU, dense, elu_dense, gather_ok, onehot_linear
from blast_core.agent.priors import GRUPrior, IndependentPrior, Prior
from blast_core.config import RSSMConfig

State = dict[str, Tensor]


def make_prior(cfg: RSSMConfig) -> Prior:
    """The prior the config asks for: `ar_steps` 1 is DreamerV2's, else `ar_net` picks
    (blast_core/agent/priors.py)."""
    if cfg.ar_steps == 1:
        return IndependentPrior(cfg)
    return {"gru": GRUPrior, "made": MADEPrior}[cfg.ar_net](cfg)


class RSSM(nn.Module):
    def __init__(self, cfg: RSSMConfig, embed: int, actions: int):
        super().__init__()
        self.cfg = cfg
        stoch = cfg.stoch * cfg.discrete
        self.deter_in = elu_dense(stoch + actions, cfg.hidden)
        self.gru = LayerNormGRU(cfg.hidden, cfg.deter)
        self.post_out = elu_dense(cfg.deter + embed, cfg.hidden, cfg.obs_out_norm)
        self.post_dist = dense(cfg.hidden, stoch)
        self.prior = make_prior(cfg)

    # --- states ---------------------------------------------------------------------------------

    def initial(self, n: int, device: torch.device | str = "cpu") -> State:
        c = self.cfg
        return {
            "stoch": torch.zeros(n, c.stoch, c.discrete, device=device),
            "logits": torch.zeros(n, c.stoch, c.discrete, device=device),
            "deter": torch.zeros(n, c.deter, device=device),
        }

    @staticmethod
    def feat(state: State) -> Tensor:
        """feat = concat(z flattened, h)."""
        stoch = state["stoch"]
        return torch.cat([stoch.reshape(*stoch.shape[:-2], -1), state["deter"]], -1)

    def _dist(self, logits: Tensor) -> OneHot:
        return OneHot(logits.reshape(*logits.shape[:-1], self.cfg.stoch, self.cfg.discrete), dims=1)

    # --- steps ----------------------------------------------------------------------------------

    def deter_step(self, prev: State, action: Tensor) -> Tensor:
        stoch = prev["stoch"].reshape(*prev["stoch"].shape[:-2], -1)
        x = torch.cat([stoch, action], -1)
        if gather_ok(x):
            x = self.deter_in[1:](onehot_linear(x, self.deter_in[0], *self.cfg.latent))
        else:
            x = self.deter_in(x)
        return self.gru(x, prev["deter"])

    def post_step(self, deter: Tensor, embed: Tensor, sample: bool = True) -> State:
        logits = self.post_dist(self.post_out(torch.cat([deter, embed], -1)))
        dist = self._dist(logits)
        stoch = dist.sample() if sample else dist.mode()
        return {"stoch": stoch, "logits": dist.logits, "deter": deter}

    def obs_step(self, prev: State, action: Tensor, embed: Tensor, is_first: Tensor,
                 sample: bool = True) -> State:
        """One filtering step; the state and action are zeroed where an episode starts."""
        keep = (~is_first).float()
        prev = {k: v * keep.reshape(-1, *[1] * (v.dim() - 1)) for k, v in prev.items()}
        return self.post_step(self.deter_step(prev, action * keep[:, None]), embed, sample)

    def img_step(self, prev: State, action: Tensor, sample: bool = True) -> State:
        """One imagined step: the deterministic update, then the prior."""
        deter = self.deter_step(prev, action)
        logits, stoch = self.prior(deter, sample=sample)
        return {"stoch": stoch, "logits": logits, "deter": deter}

    # --- sequences ------------------------------------------------------------------------------

    def observe(self, embed: Tensor, action: Tensor, is_first: Tensor,
                state: State | None = None) -> State:
        """Posterior chain over [B, T]; returns states stacked as [B, T, ...].

        The prior is not computed here: it depends on h_t only, so the loss computes it for all
        B·T positions at once (and the AR prior needs the target posterior as its teacher)."""
        B, T = embed.shape[:2]
        state = state or self.initial(B, embed.device)
        step = self._obs_steps(embed, action, is_first)
        states = []
        for t in range(T):
            state = step(state, t)
            states.append(state)
        return {k: torch.stack([s[k] for s in states], 1) for k in states[0]}

    def _obs_steps(self, embed: Tensor, action: Tensor,
                   is_first: Tensor) -> Callable[[State, int], State]:
        """`obs_step` for the steps of one [B, T] chain, with the halves of `deter_in` and
        `post_out` that read the action and the embedding (and their biases) computed for all
        B·T steps in one matmul each, out of the sequential loop."""
        c = self.cfg
        stoch = c.stoch * c.discrete
        keep = (~is_first).float()
        deter_in, post_out = self.deter_in[0], self.post_out[0]
        act_part = F.linear(action * keep[..., None], deter_in.weight[:, stoch:], deter_in.bias)
        embed_part = F.linear(embed, post_out.weight[:, c.deter:], post_out.bias)

        def step(prev: State, t: int) -> State:
            k = keep[:, t, None]
            z = prev["stoch"].reshape(k.shape[0], -1) * k
            x = self.deter_in[1:](F.linear(z, deter_in.weight[:, :stoch]) + act_part[:, t])
            deter = self.gru(x, prev["deter"] * k)
            hidden = F.linear(deter, post_out.weight[:, :c.deter]) + embed_part[:, t]
            dist = self._dist(self.post_dist(self.post_out[1:](hidden)))
            return {"stoch": dist.sample(), "logits": dist.logits, "deter": deter}

        return step

    def imagine(self, start: State, policy, horizon: int) -> tuple[State, Tensor]:
        """Roll the prior forward `horizon` steps from `start` ([N, ...]).

        Returns states [H+1, N, ...] (index 0 is the start) and actions [H+1, N, A] where
        action[t] is the one that led into state t (action[0] is zeros):

            state:   s0 ── a1 ──> s1 ── a2 ──> s2 ... sH
            action:  0        a1        a2         aH
        """
        states, actions = [start], []
        state = start
        for _ in range(horizon):
            action = policy(self.feat(state).detach())
            state = self.img_step(state, action)
            states.append(state)
            actions.append(action)
        actions.insert(0, torch.zeros_like(actions[0]))
        seq = {k: torch.stack([s[k] for s in states], 0) for k in ("stoch", "deter", "logits")}
        return seq, torch.stack(actions, 0)
