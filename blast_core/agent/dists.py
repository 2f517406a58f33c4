"""Distributions of DreamerV2 (spec §2.3): straight-through one-hot and a proper truncated normal.

torch.distributions has neither a straight-through one-hot sample nor a reparameterised truncated
normal; the clipped normal some ports use changes the entropy and the log-probability (spec §6.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class OneHot:
    """Categorical over the last axis with straight-through one-hot samples.

    `dims` trailing axes before the class axis are independent and summed over in log_prob and
    entropy: 0 for an action, 1 for the [stoch, discrete] latent.
    """

    def __init__(self, logits: Tensor, dims: int = 0):
        self.logits = logits.float()  # a bf16 matmul's output under autocast
        self.dims = dims
        self.log_probs = F.log_softmax(self.logits, -1)
        self.probs = self.log_probs.exp()

    def _sum(self, x: Tensor) -> Tensor:
        return x.sum(tuple(range(-self.dims, 0))) if self.dims else x

    def _straight_through(self, index: Tensor) -> Tensor:
        onehot = F.one_hot(index, self.logits.shape[-1]).to(self.probs.dtype)
        # The value is the one-hot sample; the gradient is that of the probabilities.
        return onehot + self.probs - self.probs.detach()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        flat = self.probs.detach().reshape(-1, self.probs.shape[-1])
        index = torch.multinomial(flat, 1, generator=generator).reshape(self.probs.shape[:-1])
        return self._straight_through(index)

    def mode(self) -> Tensor:
        return self._straight_through(self.logits.argmax(-1))

    def log_prob(self, value: Tensor) -> Tensor:
        return self._sum((value * self.log_probs).sum(-1))

    def entropy(self) -> Tensor:
        return self._sum(-(self.probs * self.log_probs).sum(-1))


def kl_onehot(lhs_logits: Tensor, rhs_logits: Tensor) -> Tensor:
    """KL(lhs || rhs) of [..., stoch, discrete] latents, summed over the stoch variables."""
    lhs = F.log_softmax(lhs_logits.float(), -1)
    rhs = F.log_softmax(rhs_logits.float(), -1)
    return (lhs.exp() * (lhs - rhs)).sum((-2, -1))


def _phi(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x * x - _LOG_SQRT_2PI)


def _cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def _icdf(p: Tensor) -> Tensor:
    return math.sqrt(2) * torch.erfinv(2 * p - 1)


class TruncNormal:
    """Normal(loc, scale) truncated to [low, high], independent over the last axis.

    Samples are reparameterised through the inverse CDF; entropy and log-probability are
    analytic. As in DreamerV2, samples are clipped straight-through to stay strictly inside.
    """

    def __init__(self, loc: Tensor, scale: Tensor, low: float = -1.0, high: float = 1.0,
                 clip: float = 1e-6):
        loc, scale = loc.float(), scale.float()
        self.loc, self.scale = loc, scale
        self.low, self.high, self.clip = low, high, clip
        self.alpha = (low - loc) / scale
        self.beta = (high - loc) / scale
        self.cdf_alpha = _cdf(self.alpha)
        self.z = (_cdf(self.beta) - self.cdf_alpha).clamp_min(1e-8)

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(self.loc.shape, generator=generator, device=self.loc.device,
                       dtype=self.loc.dtype)
        p = (self.cdf_alpha + u * self.z).clamp(1e-6, 1 - 1e-6)
        x = self.loc + self.scale * _icdf(p)
        clipped = x.clamp(self.low + self.clip, self.high - self.clip)
        return x + (clipped - x).detach()

    sample = rsample

    def mode(self) -> Tensor:
        return self.loc

    def log_prob_each(self, value: Tensor) -> Tensor:
        xi = (value - self.loc) / self.scale
        return -0.5 * xi * xi - _LOG_SQRT_2PI - self.scale.log() - self.z.log()

    def log_prob(self, value: Tensor) -> Tensor:
        return self.log_prob_each(value).sum(-1)

    def entropy_each(self) -> Tensor:
        a, b = self.alpha, self.beta
        return (_LOG_SQRT_2PI + 0.5 + self.scale.log() + self.z.log()
                + (a * _phi(a) - b * _phi(b)) / (2 * self.z))

    def entropy(self) -> Tensor:
        return self.entropy_each().sum(-1)


def normal_nll(mean: Tensor, target: Tensor, dims: int) -> Tensor:
    """−log N(target | mean, 1) without its constant (0.919 per dimension), summed over the last
    `dims` axes: DreamerV2's `mse` heads. Dropping the constant changes no gradient and makes
    0 the perfect loss. The target gets no gradient (it is data)."""
    return _HalfSquaredError.apply(mean, target.detach(), dims)


class _HalfSquaredError(torch.autograd.Function):
    """0.5 · (mean − target)² summed over the last `dims` axes, with one pass over the inputs
    forward and one backward (autograd's pow, mul and sum take five, and its backward hands
    the decoder a gradient in the broadcast grad's memory format instead of the image's, which
    costs the transposed convolution a copy of every frame)."""

    @staticmethod
    def forward(ctx, mean: Tensor, target: Tensor, dims: int) -> Tensor:  # noqa: ANN001
        diff = mean - target
        ctx.save_for_backward(diff)
        ctx.dims = dims
        sq = diff * diff
        return 0.5 * (sq.sum(tuple(range(-dims, 0))) if dims else sq)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        (diff,) = ctx.saved_tensors
        # diff first, so the gradient takes its memory format (NHWC frames stay NHWC).
        return diff * grad.reshape(*grad.shape, *[1] * ctx.dims), None, None


def bernoulli_log_prob(logits: Tensor, target: Tensor) -> Tensor:
    """log Bernoulli(target | sigmoid(logits)) for soft targets (the discount head's 0.99 or 0)."""
    return -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
