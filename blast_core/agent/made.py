"""A masked autoregressive prior (`rssm.ar_net made`): the same factorisation as BLAST's AR prior,

    p(z | h) = prod_i p(z_i | h, z_<i)          z_i: group i of the latents (k variables)

but computed by an MLP over [h, z] whose weights are masked (MADE, Germain et al. 2015) instead of
a second GRU stepping over the groups. Not the paper's network: an option for when the AR
prior's sequential cost matters (spec §3.6 costs S GRU steps per imagined step).

Every hidden unit has a degree d in 0..S-1 and sees h and the groups before d; group i's logits
read the units of degree <= i, so they depend on h and z_<i only:

    layer   unit of degree d reads                  mask
    inp     h, and z_j for j < d                    j < d
    out     units of degree <= d                   d_in <= d_out
    dist    group i reads units of degree <= i      d <= i

Half of each layer's units have degree 0 (they see h only: every group, the first included, gets
at least half the width; `rssm.ar_h_share` sets the share); the rest are spread evenly over
degrees 1..S-1. Units are ordered by degree, so a degree is a contiguous block and group i's
inputs are a prefix of each layer.

Degrees never fall along a path, so z_{i-1} reaches group i's logits only through the units of
degree i in both layers: with half of them at degree 0, (hidden/2)/(S-1), 4 or 5 at the `cpu`
preset, 20 at the paper's MiniGrid size. `direct=True` (`rssm.ar_direct`) adds MADE's direct
connections, a masked linear map z -> logits (group j feeds group i when j < i), so every
earlier group reaches group i's logits through a full weight block, not only through that
narrow band of units.

Teacher forcing is one masked pass over all groups. Sampling computes each block once, when the
groups it reads are known: in total about one pass, instead of S passes of the network.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blast_core.agent.dists import OneHot
from blast_core.agent.nets import dense, init_
from blast_core.agent.priors import Prior
from blast_core.config import RSSMConfig


def degrees(units: int, groups: int, first: int) -> Tensor:
    """Non-decreasing degree of each unit: the first `first` 0, the rest spread over 1..groups-1."""
    first = first if groups > 1 else units
    rest = torch.arange(units - first)
    return torch.cat([torch.zeros(first, dtype=torch.long),
                      1 + rest * (groups - 1) // max(units - first, 1)])


class MADEPrior(Prior):
    """Prior logits over `ar_steps` groups of `width` (= variables × classes) each, from h."""

    def __init__(self, cfg: RSSMConfig) -> None:
        super().__init__(cfg)
        hidden, groups = cfg.ar_hidden or cfg.hidden, cfg.ar_steps
        self.deter, self.groups = cfg.deter, groups
        self.width = group_size = cfg.stoch // groups * cfg.discrete
        self.inp = dense(cfg.deter + groups * group_size, hidden)
        self.out = dense(hidden, hidden)
        self.dist = dense(hidden, groups * group_size)
        # No bias: dist's is the logits' bias.
        n = groups * group_size
        self.direct = init_(nn.Linear(n, n, bias=False)) if cfg.ar_direct else None
        d = degrees(hidden, groups, cfg.ar_h_units)
        group = torch.arange(groups).repeat_interleave(group_size)  # of each z column / logit
        # Masks are derived from the config, so checkpoints do not hold them.
        self.register_buffer("mask_in", (group[None] < d[:, None]).float(), False)
        self.register_buffer("mask_out", (d[None] <= d[:, None]).float(), False)
        self.register_buffer("mask_dist", (d[None] <= group[:, None]).float(), False)
        if cfg.ar_direct:
            self.register_buffer("mask_direct", (group[None] < group[:, None]).float(), False)
        # ends[i]: units of degree <= i, the prefix of each hidden layer that group i reads.
        self.ends = [int((d <= i).sum()) for i in range(groups)]

    def forced(self, h: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits [N, S·width] from h [N, deter] and z [N, S·width], one pass."""
        w_h, w_z = self.inp.weight[:, :self.deter], self.inp.weight[:, self.deter:]
        x = F.elu(F.linear(h, w_h, self.inp.bias) + F.linear(teacher, w_z * self.mask_in))
        x = F.elu(F.linear(x, self.out.weight * self.mask_out, self.out.bias))
        logits = F.linear(x, self.dist.weight * self.mask_dist, self.dist.bias)
        if self.direct is not None:
            logits = logits + F.linear(teacher, self.direct.weight * self.mask_direct)
        return logits.float(), teacher

    def sampled(self, h: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
        """Groups drawn one after another: logits and straight-through samples, [N, S·width]."""
        logits, stochs = [], []
        for group_logits in self._group_logits(h, stochs):
            dist = OneHot(group_logits.reshape(h.shape[0], -1, self.cfg.discrete), dims=1)
            stochs.append((dist.sample() if sample else dist.mode()).reshape(h.shape[0], -1))
            logits.append(dist.logits.reshape(h.shape[0], -1))
        return torch.cat(logits, 1), torch.cat(stochs, 1)

    def _group_logits(self, h: Tensor, stochs: list[Tensor]) -> Iterator[Tensor]:
        """Each layer's block of degree i computed once, after z_<i is known (`stochs`, which the
        caller extends with z_i after each yield). Inside the prefixes read here every mask entry
        is one, so the weights are sliced instead of masked.

        Activations are kept feature-major ([units, N]) so that a block is a run of rows and a
        layer's known prefix grows without copying; `pending` holds the first layer's
        pre-activations of the blocks still to come, with the z's drawn so far added in, and
        `direct` the later groups' direct-connection terms, likewise."""
        w_in, w_out, w_dist = self.inp.weight, self.out.weight, self.dist.weight
        b_in, b_out = self.inp.bias[:, None], self.out.bias[:, None]  # feature-major
        b_dist = self.dist.bias
        pending = torch.addmm(b_in, w_in[:, :self.deter], h.t())          # [hidden, N]
        x_in, x_out = _Rows(pending), _Rows(pending)
        direct, start, width = None, 0, self.width
        for i, end in enumerate(self.ends):
            x_in.add(F.elu(pending[:end - start]))
            x_out.add(F.elu(torch.addmm(b_out[start:end], w_out[start:end, :end], x_in.rows)))
            rows = slice(i * width, (i + 1) * width)
            logits = F.linear(x_out.rows.t(), w_dist[rows, :end], b_dist[rows])
            yield (logits if direct is None else logits + direct[:width].t()).float()
            if i + 1 < self.groups:
                cols = slice(i * width, (i + 1) * width)
                z_cols = w_in[end:, self.deter + cols.start:self.deter + cols.stop]
                pending = torch.addmm(pending[end - start:], z_cols, stochs[-1].t())
                if self.direct is not None:
                    w_direct = self.direct.weight[cols.stop:, cols]
                    direct = (w_direct @ stochs[-1].t() if direct is None
                              else torch.addmm(direct[width:], w_direct, stochs[-1].t()))
            start = end


class _Rows:
    """The rows of a [units, N] activation known so far, filled block by block in order.

    Without gradients the blocks are written into one buffer and `rows` is a view of its filled
    part; with gradients they are concatenated, since autograd keeps each prefix a product read."""

    def __init__(self, like: Tensor):
        self.buffer = None if torch.is_grad_enabled() else torch.empty_like(like)
        self.blocks: list[Tensor] = []
        self.rows = like[:0]

    def add(self, block: Tensor) -> None:
        end = self.rows.shape[0] + block.shape[0]
        if self.buffer is None:
            self.blocks.append(block)
            self.rows = torch.cat(self.blocks, 0)
        else:
            self.buffer[self.rows.shape[0]:end] = block
            self.rows = self.buffer[:end]
