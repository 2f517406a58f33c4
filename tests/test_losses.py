"""Losses and returns against naive references (spec §2.4, §2.5)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from blast_core.agent.dists import OneHot, TruncNormal, kl_onehot, normal_nll
from blast_core.agent.losses import (
    actor_loss,
    critic_loss,
    imagination_weight,
    kl_loss,
    lambda_return,
)


def test_lambda_return_equals_naive_loop():
    g = torch.Generator().manual_seed(0)
    T, N, lam = 15, 7, 0.95
    reward, value, disc = (torch.randn(T, N, generator=g) for _ in range(3))
    disc = disc.sigmoid()
    boot = torch.randn(N, generator=g)
    got = lambda_return(reward, value, disc, boot, lam)
    want = np.zeros((T, N))
    for n in range(N):
        nxt = float(boot[n])
        for t in reversed(range(T)):
            v_next = float(value[t + 1, n]) if t + 1 < T else float(boot[n])
            nxt = float(reward[t, n]) + float(disc[t, n]) * ((1 - lam) * v_next + lam * nxt)
            want[t, n] = nxt
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_lambda_one_is_discounted_monte_carlo_and_zero_is_td():
    reward = torch.tensor([[1.0], [2.0], [3.0]])
    value = torch.tensor([[10.0], [20.0], [30.0]])
    disc = torch.full((3, 1), 0.5)
    boot = torch.tensor([40.0])
    mc = lambda_return(reward, value, disc, boot, 1.0)
    assert mc[0, 0] == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 40)
    td = lambda_return(reward, value, disc, boot, 0.0)
    assert td[:, 0].tolist() == pytest.approx([1 + 0.5 * 20, 2 + 0.5 * 30, 3 + 0.5 * 40])


def _logits(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_(requires_grad)


def _naive_kl(q_logits, p_logits):
    """KL(q || p) summed over latents, by explicit loops over variables and classes."""
    q, p = q_logits.softmax(-1), p_logits.softmax(-1)
    out = torch.zeros(q.shape[:-2])
    for i in range(q.shape[-2]):
        for k in range(q.shape[-1]):
            out = out + q[..., i, k] * (q[..., i, k].log() - p[..., i, k].log())
    return out


def test_kl_onehot_equals_naive_sum():
    q, p = _logits(4, 5, 3, 6, seed=1), _logits(4, 5, 3, 6, seed=2)
    torch.testing.assert_close(kl_onehot(q, p), _naive_kl(q, p))


def test_kl_balance_at_08_weights_prior_and_posterior_terms():
    q = _logits(4, 5, 3, 6, seed=1, requires_grad=True)
    p = _logits(4, 5, 3, 6, seed=2, requires_grad=True)
    loss, value = kl_loss(q, p, balance=0.8, free=0.0, free_avg=True)
    torch.testing.assert_close(loss, _naive_kl(q, p).mean())
    torch.testing.assert_close(value, _naive_kl(q, p).detach())
    loss.backward()
    # Gradients: 0.8 of d KL/d p reaches the prior, 0.2 of d KL/d q the posterior.
    q2, p2 = q.detach().clone().requires_grad_(), p.detach().clone().requires_grad_()
    _naive_kl(q2, p2).mean().backward()
    torch.testing.assert_close(p.grad, 0.8 * p2.grad)
    torch.testing.assert_close(q.grad, 0.2 * q2.grad)


def test_kl_balance_one_sends_no_gradient_to_posterior():
    q = _logits(4, 5, 3, 6, seed=1, requires_grad=True)
    p = _logits(4, 5, 3, 6, seed=2, requires_grad=True)
    loss, _ = kl_loss(q, p, balance=1.0, free=0.0, free_avg=True)
    loss.backward()
    assert torch.count_nonzero(q.grad) == 0
    assert torch.count_nonzero(p.grad) > 0


def test_free_nats_apply_after_averaging():
    q = _logits(8, 4, 3, seed=3, requires_grad=True)
    p = _logits(8, 4, 3, seed=4, requires_grad=True)
    kl = _naive_kl(q, p).detach()
    free = float(kl.mean()) + 0.1  # above the mean but below the largest element
    assert float(kl.max()) > free
    loss, _ = kl_loss(q, p, balance=0.8, free=free, free_avg=True)
    assert float(loss.detach()) == pytest.approx(free)
    loss.backward()
    assert torch.count_nonzero(q.grad) == 0 and torch.count_nonzero(p.grad) == 0
    # Per element, the elements above `free` would still pass gradient.
    q.grad = p.grad = None
    loss_each, _ = kl_loss(q, p, balance=0.8, free=free, free_avg=False)
    want = kl.clamp_min(free).mean()
    assert float(loss_each.detach()) == pytest.approx(float(want), rel=1e-5)
    loss_each.backward()
    assert torch.count_nonzero(p.grad) > 0


def test_imagination_weight_is_cumulative_product_shifted():
    disc = torch.tensor([[0.5], [0.9], [0.8], [0.7]])
    w = imagination_weight(disc)
    assert w[:, 0].tolist() == pytest.approx([1, 0.5, 0.45, 0.36])


def test_critic_and_actor_losses_match_formulas():
    g = torch.Generator().manual_seed(5)
    value, target, weight = (torch.randn(4, 3, generator=g) for _ in range(3))
    assert float(critic_loss(value, target, weight)) == pytest.approx(
        float((weight * 0.5 * (value - target) ** 2).mean()))
    logp, ent, ret, base = (torch.randn(3, 3, generator=g) for _ in range(4))
    w = weight[:3]
    rein = actor_loss(logp, ent, ret, base, w, "reinforce", 0.0, 0.1)
    assert float(rein) == pytest.approx(float(-(w * (logp * (ret - base) + 0.1 * ent)).mean()))
    dyn = actor_loss(logp, ent, ret, base, w, "dynamics", 0.0, 0.1)
    assert float(dyn) == pytest.approx(float(-(w * (ret + 0.1 * ent)).mean()))
    both = actor_loss(logp, ent, ret, base, w, "both", 0.3, 0.1)
    mixed = 0.3 * ret + 0.7 * logp * (ret - base)
    assert float(both) == pytest.approx(float(-(w * (mixed + 0.1 * ent)).mean()))


def test_reinforce_advantage_is_stop_gradient():
    logp = torch.zeros(2, 2, requires_grad=True)
    ret = torch.ones(2, 2, requires_grad=True)
    actor_loss(logp, torch.zeros(2, 2), ret, torch.zeros(2, 2), torch.ones(2, 2),
               "reinforce", 0.0, 0.0).backward()
    assert ret.grad is None and logp.grad is not None


def test_truncated_normal_matches_scipy():
    loc = torch.tensor([-0.9, -0.3, 0.0, 0.5, 0.95])
    scale = torch.tensor([0.1, 0.5, 2.0, 1.0, 0.3])
    dist = TruncNormal(loc, scale)
    a, b = (-1 - loc) / scale, (1 - loc) / scale
    ref = stats.truncnorm(a.numpy(), b.numpy(), loc=loc.numpy(), scale=scale.numpy())
    x = torch.tensor([-0.95, 0.2, -0.7, 0.99, 0.9])
    np.testing.assert_allclose(dist.log_prob_each(x).numpy(), ref.logpdf(x.numpy()), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(dist.entropy_each().numpy(), ref.entropy(), rtol=1e-4, atol=1e-4)
    assert float(dist.entropy()) == pytest.approx(float(ref.entropy().sum()), rel=1e-4)


def test_truncated_normal_samples_are_reparameterised_and_inside():
    loc = torch.full((20000,), 0.6, requires_grad=True)
    scale = torch.full((20000,), 0.7, requires_grad=True)
    dist = TruncNormal(loc, scale)
    x = dist.rsample(torch.Generator().manual_seed(0))
    values = x.detach()
    assert float(values.min()) > -1 and float(values.max()) < 1
    ref = stats.truncnorm((-1 - 0.6) / 0.7, (1 - 0.6) / 0.7, loc=0.6, scale=0.7)
    assert float(values.mean()) == pytest.approx(ref.mean(), abs=0.02)
    assert float(values.std()) == pytest.approx(ref.std(), abs=0.02)
    x.sum().backward()
    assert loc.grad is not None and torch.isfinite(loc.grad).all()
    assert torch.isfinite(scale.grad).all()


def test_onehot_straight_through_and_log_prob():
    logits = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
    dist = OneHot(logits)
    sample = dist.sample(torch.Generator().manual_seed(0))
    assert sorted(sample.detach()[0].tolist()) == [0.0, 0.0, 1.0]
    (sample * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0
    probs = logits.detach().softmax(-1)[0]
    log_prob = dist.log_prob(torch.tensor([[0.0, 1.0, 0.0]])).detach()
    assert float(log_prob) == pytest.approx(math.log(float(probs[1])), rel=1e-5)
    entropy = dist.entropy().detach()
    assert float(entropy) == pytest.approx(float(-(probs * probs.log()).sum()), rel=1e-5)


@pytest.mark.parametrize("dims", [0, 3])
def test_normal_nll_is_half_squared_error_with_its_gradient(dims):
    """−log N(x | mean, 1) + const, per element or summed over an image's (C, H, W), in
    value and gradient; an NHWC mean gets an NHWC gradient (the decoder's frames)."""
    torch.manual_seed(0)
    shape = (2, 3, 3, 4, 5)[:2 + dims]
    mean = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    target = torch.randn(shape, dtype=torch.float64)
    naive = torch.distributions.Normal(mean, 1.0).log_prob(target) + 0.5 * math.log(2 * math.pi)
    naive = -(naive.sum(tuple(range(-dims, 0))) if dims else naive)
    torch.testing.assert_close(normal_nll(mean, target, dims), naive)
    assert torch.autograd.gradcheck(lambda m: normal_nll(m, target, dims), (mean,))
    if dims == 3:
        frames = torch.randn(6, 3, 8, 8).contiguous(memory_format=torch.channels_last)
        frames.requires_grad_(True)
        normal_nll(frames, torch.zeros(6, 3, 8, 8), 3).sum().backward()
        assert frames.grad.is_contiguous(memory_format=torch.channels_last)
