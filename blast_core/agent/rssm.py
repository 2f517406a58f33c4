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
from blast_core.agent.nets import (
    LayerNormGRU,
    dense,
    elu_dense,
    gather_ok,
    onehot_index,
    onehot_linear,
)
from blast_core.config import RSSMConfig

State = dict[str, Tensor]


class RSSM(nn.Module):
    def __init__(self, cfg: RSSMConfig, embed: int, actions: int):
        super().__init__()
        self.cfg = cfg
        stoch = cfg.stoch * cfg.discrete
        self.deter_in = elu_dense(stoch + actions, cfg.hidden)
        self.gru = LayerNormGRU(cfg.hidden, cfg.deter)
        self.post_out = elu_dense(cfg.deter + embed, cfg.hidden, cfg.obs_out_norm)
        self.post_dist = dense(cfg.hidden, stoch)
        ar = cfg.ar_steps > 1
        if ar and cfg.ar_net == "made":
            self.made = MADEPrior(cfg.deter, cfg.ar_hidden or cfg.hidden, cfg.ar_steps,
                                  stoch // cfg.ar_steps, cfg.ar_h_units, cfg.ar_direct)
        else:
            # With the GRU AR prior the output MLP reads the AR cell's hidden layer, not h.
            self.prior_out = elu_dense(cfg.hidden if ar else cfg.deter, cfg.hidden)
            self.prior_dist = dense(cfg.hidden, stoch)
        if ar and cfg.ar_net == "gru":
            group = cfg.stoch // cfg.ar_steps * cfg.discrete
            self.ar_in = elu_dense(cfg.deter, cfg.hidden)
            self.ar_sample_in = elu_dense(group, cfg.hidden)
            self.ar_gru = LayerNormGRU(cfg.hidden, cfg.deter)

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

    def prior(self, deter: Tensor, teacher: Tensor | None = None,
              sample: bool = True) -> tuple[Tensor, Tensor]:
        """Prior logits and straight-through samples, [..., stoch, discrete].

        AR prior: the groups of latents are produced one after another by a second GRU whose
        state starts at h and which reads each group's one-hot — the teacher's (training, one
        pass over all positions; the teacher, one-hot samples, is then also the returned
        sample) or its own sample (imagination). With `ar_net made` a masked MLP computes the
        same factorisation (blast_core/agent/made.py)."""
        c = self.cfg
        lead = deter.shape[:-1]
        h = deter.reshape(-1, c.deter)
        if c.ar_steps == 1:
            dist = self._dist(self.prior_dist(self.prior_out(h)))
            stoch = dist.sample() if sample else dist.mode()
            return dist.logits.reshape(*lead, c.stoch, c.discrete), stoch.reshape(
                *lead, c.stoch, c.discrete)
        if c.ar_net == "made":
            if teacher is not None:
                logits, stoch = self.made(h, teacher.reshape(h.shape[0], -1)), teacher
            else:
                logits, stoch = self.made.sample(h, c.discrete, sample)
        elif teacher is not None:
            teacher = teacher.reshape(-1, c.ar_steps, c.stoch // c.ar_steps * c.discrete)
            logits, stoch = self._ar_forced(h, teacher)
        else:
            logits, stoch = self._ar_sampled(h, sample)
        return logits.reshape(*lead, c.stoch, c.discrete), stoch.reshape(*lead, c.stoch,
                                                                        c.discrete)

    def _ar_head(self, x: Tensor, i: int) -> Tensor:
        """Group i's logits from the AR state: only group i's rows of the shared output layer."""
        width = self.cfg.stoch // self.cfg.ar_steps * self.cfg.discrete
        rows = slice(i * width, (i + 1) * width)
        y = self.prior_out(self.ar_in(x))
        return F.linear(y, self.prior_dist.weight[rows], self.prior_dist.bias[rows])

    def _ar_input_table(self, like: Tensor) -> Tensor:
        """[discrete, 3·deter]: what each one-hot group (one variable per group) adds to the AR
        GRU's dense layer, `ar_sample_in` and the x half of that layer with its bias."""
        eye = torch.eye(self.cfg.discrete, device=like.device, dtype=like.dtype)
        w_x, _ = self.ar_gru.split_weight()
        return F.linear(self.ar_sample_in(eye), w_x, self.ar_gru.linear.bias)

    def _ar_forced(self, h: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing with only the GRU's h half left in the sequential loop: the teacher's
        inputs go through `ar_sample_in` and the x half of the GRU for all groups in one matmul,
        and the heads of all groups run after the loop, as one batched matmul per layer.

        With one variable per group the teacher (straight-through samples, exactly one-hot in
        value) picks one of `discrete` rows: the x half is then computed for the `discrete`
        one-hots only and looked up, and its weight gradient sums the looked-up rows' gradients
        per class first (−79 GFLOP of the MiniGrid ar_prior update; the same sums, regrouped)."""
        c = self.cfg
        S, N = c.ar_steps, h.shape[0]
        w_x, w_h = self.ar_gru.split_weight()
        if teacher.shape[-1] == c.discrete and not teacher.requires_grad:
            inputs = F.embedding(onehot_index(teacher[:, :-1])[0], self._ar_input_table(h))
        else:
            inputs = F.linear(self.ar_sample_in(teacher[:, :-1]), w_x, self.ar_gru.linear.bias)
        states = [h]
        for i in range(S - 1):
            states.append(self.ar_gru.cell(inputs[:, i] + F.linear(states[-1], w_h), states[-1]))
        y = self.prior_out(self.ar_in(torch.stack(states, 0)))       # [S, N, hidden]
        width = self.prior_dist.out_features // S
        weight = self.prior_dist.weight.view(S, width, -1)
        bias = self.prior_dist.bias.view(S, 1, width)
        logits = torch.baddbmm(bias, y, weight.transpose(1, 2))      # [S, N, width]
        return logits.transpose(0, 1).reshape(N, -1).float(), teacher

    def _ar_sampled(self, h: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
        """Each group sampled from the logits given the groups sampled before it.

        Fast path without gradient and with one variable per group: the sample is one of
        `discrete` one-hots, so its whole contribution to the AR GRU (ar_sample_in, then the x
        half of the GRU's dense layer) is a row of a table computed once per call. With
        gradients the straight-through sample must go through the layers, so they run as is."""
        c = self.cfg
        k = c.stoch // c.ar_steps
        w_x, w_h = self.ar_gru.split_weight()
        table = None
        if k == 1 and not torch.is_grad_enabled():
            table = self._ar_input_table(h)
        state, logits, stochs = h, [], []
        for i in range(c.ar_steps):
            dist = OneHot(self._ar_head(state, i).reshape(-1, k, c.discrete), dims=1)
            z = dist.sample() if sample else dist.mode()
            logits.append(dist.logits)
            stochs.append(z)
            if i + 1 == c.ar_steps:  # the last GRU update would be discarded
                break
            if table is not None:
                pre = table[onehot_index(z.reshape(-1, c.discrete))[0]] + F.linear(state, w_h)
                state = self.ar_gru.cell(pre, state)
            else:
                state = self.ar_gru(self.ar_sample_in(z.reshape(-1, k * c.discrete)), state)
        return torch.cat(logits, 1), torch.cat(stochs, 1)

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
