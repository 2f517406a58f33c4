"""The prior p(z_t | h_t), one class per factorisation.

    IndependentPrior   DreamerV2 (spec §2.3): every latent independent given h, one MLP
    GRUPrior           BLAST's +AR (spec §3.6): the groups of latents one after another, through
                       a second GRU whose state starts at h and reads each group's one-hot
    MADEPrior          `rssm.ar_net made`: the same factorisation by a masked MLP (made.py)

`make_prior` in rssm.py picks one from the config.

All three are called the same way, `prior(deter, teacher=None, sample=True)` with h of any leading
shape, and return (logits, stoch), both [..., stoch, discrete]. Given a teacher (one-hot samples
of z, training) an autoregressive prior conditions every group on the teacher's earlier groups in
one pass and returns the teacher as its sample; without one (imagination) it draws each group and
conditions the next on it. The independent prior has nothing to condition: it ignores the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blast_core.agent.dists import OneHot
from blast_core.agent.nets import LayerNormGRU, dense, elu_dense, onehot_index
from blast_core.config import RSSMConfig


class Prior(nn.Module):
    """What every prior shares: h of any leading shape in, [..., stoch, discrete] out."""

    def __init__(self, cfg: RSSMConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, deter: Tensor, teacher: Tensor | None = None,
                sample: bool = True) -> tuple[Tensor, Tensor]:
        c = self.cfg
        lead = deter.shape[:-1]
        h = deter.reshape(-1, c.deter)
        if teacher is None:
            logits, stoch = self.sampled(h, sample)
        else:
            logits, stoch = self.forced(h, teacher.reshape(h.shape[0], -1))
        shape = (*lead, c.stoch, c.discrete)
        return logits.reshape(shape), stoch.reshape(shape)

    def sampled(self, h: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
        """Logits and straight-through samples (or modes), [N, stoch·discrete], of h [N, deter]."""
        raise NotImplementedError

    def forced(self, h: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Logits given the teacher's groups [N, stoch·discrete] (the teacher returned as z)."""
        raise NotImplementedError


class IndependentPrior(Prior):
    """DreamerV2's prior: one MLP from h to the logits of every latent at once."""

    def __init__(self, cfg: RSSMConfig) -> None:
        super().__init__(cfg)
        self.out = elu_dense(cfg.deter, cfg.hidden)
        self.dist = dense(cfg.hidden, cfg.stoch * cfg.discrete)

    def sampled(self, h: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
        c = self.cfg
        dist = OneHot(self.dist(self.out(h)).reshape(-1, c.stoch, c.discrete), dims=1)
        stoch = dist.sample() if sample else dist.mode()
        return dist.logits, stoch

    def forced(self, h: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        # A sample is still drawn, as the RSSM always did: the random stream of DreamerV2 runs
        # stays what it was.
        return self.sampled(h, True)


class GRUPrior(Prior):
    """Group i's logits from the AR GRU's state after groups < i: `out` reads `ar_in` of that
    state (the state is h for group 0), and `dist`'s rows for group i give its logits."""

    def __init__(self, cfg: RSSMConfig) -> None:
        super().__init__(cfg)
        # The registration order is the one of the RSSM before the priors were classes (the
        # optimiser's state in a checkpoint is matched to the parameters by position).
        self.out = elu_dense(cfg.hidden, cfg.hidden)
        self.dist = dense(cfg.hidden, cfg.stoch * cfg.discrete)
        self.ar_in = elu_dense(cfg.deter, cfg.hidden)
        self.sample_in = elu_dense(cfg.stoch // cfg.ar_steps * cfg.discrete, cfg.hidden)
        self.gru = LayerNormGRU(cfg.hidden, cfg.deter)

    def head(self, x: Tensor, i: int) -> Tensor:
        """Group i's logits from the AR state: only group i's rows of the shared output layer."""
        width = self.dist.out_features // self.cfg.ar_steps
        rows = slice(i * width, (i + 1) * width)
        return F.linear(self.out(self.ar_in(x)), self.dist.weight[rows], self.dist.bias[rows])

    def input_table(self, like: Tensor) -> Tensor:
        """[discrete, 3·deter]: what each one-hot group (one variable per group) adds to the AR
        GRU's dense layer, `sample_in` and the x half of that layer with its bias."""
        eye = torch.eye(self.cfg.discrete, device=like.device, dtype=like.dtype)
        w_x, _ = self.gru.split_weight()
        return F.linear(self.sample_in(eye), w_x, self.gru.linear.bias)

    def forced(self, h: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing with only the GRU's h half left in the sequential loop: the teacher's
        inputs go through `sample_in` and the x half of the GRU for all groups in one matmul,
        and the heads of all groups run after the loop, as one batched matmul per layer.

        With one variable per group the teacher (straight-through samples, exactly one-hot in
        value) picks one of `discrete` rows: the x half is then computed for the `discrete`
        one-hots only and looked up, and its weight gradient sums the looked-up rows' gradients
        per class first (−79 GFLOP of the MiniGrid ar_prior update; the same sums, regrouped)."""
        c = self.cfg
        S, N = c.ar_steps, h.shape[0]
        teacher = teacher.reshape(N, S, -1)
        w_x, w_h = self.gru.split_weight()
        if teacher.shape[-1] == c.discrete and not teacher.requires_grad:
            inputs = F.embedding(onehot_index(teacher[:, :-1])[0], self.input_table(h))
        else:
            inputs = F.linear(self.sample_in(teacher[:, :-1]), w_x, self.gru.linear.bias)
        states = [h]
        for i in range(S - 1):
            states.append(self.gru.cell(inputs[:, i] + F.linear(states[-1], w_h), states[-1]))
        y = self.out(self.ar_in(torch.stack(states, 0)))              # [S, N, hidden]
        width = self.dist.out_features // S
        weight = self.dist.weight.view(S, width, -1)
        bias = self.dist.bias.view(S, 1, width)
        logits = torch.baddbmm(bias, y, weight.transpose(1, 2))      # [S, N, width]
        return logits.transpose(0, 1).reshape(N, -1).float(), teacher

    def sampled(self, h: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
        """Each group sampled from the logits given the groups sampled before it.

        Without gradient and with one variable per group the sample is one of `discrete`
        one-hots, so its whole contribution to the AR GRU (`sample_in`, then the x half of the
        GRU's dense layer) is a row of a table computed once per call. With gradients the
        straight-through sample must go through the layers, so they run as is."""
        c = self.cfg
        k = c.stoch // c.ar_steps
        w_x, w_h = self.gru.split_weight()
        table = None
        if k == 1 and not torch.is_grad_enabled():
            table = self.input_table(h)
        state, logits, stochs = h, [], []
        for i in range(c.ar_steps):
            dist = OneHot(self.head(state, i).reshape(-1, k, c.discrete), dims=1)
            z = dist.sample() if sample else dist.mode()
            logits.append(dist.logits)
            stochs.append(z)
            if i + 1 == c.ar_steps:  # the last GRU update would be discarded
                break
            if table is not None:
                pre = table[onehot_index(z.reshape(-1, c.discrete))[0]] + F.linear(state, w_h)
                state = self.gru.cell(pre, state)
            else:
                state = self.gru(self.sample_in(z.reshape(-1, k * c.discrete)), state)
        return torch.cat(logits, 1), torch.cat(stochs, 1)
