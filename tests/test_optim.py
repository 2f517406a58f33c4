"""DreamerV2's optimiser (spec §2.6) against a naive reference: global-norm clip, then every
parameter scaled by (1 - wd), then Adam with bias correction."""

import copy
import math

import pytest
import torch

from blast_core.agent.optim import Optimizer
from blast_core.config import OptConfig


def naive_steps(params, grads_per_step, lr, eps, clip, wd, b1=0.9, b2=0.999):
    params = [p.clone().double() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, 1):
        grads = [g.double() for g in grads]
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        scale = min(1.0, clip / (norm + 1e-6))
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g * scale
            p.mul_(1 - wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return params


@pytest.mark.parametrize("clip", [100.0, 0.5])  # the clip idle, and active
def test_optimizer_matches_naive_clip_decay_adam(clip):
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3, generator=g)),
              torch.nn.Parameter(torch.randn(7, generator=g))]
    start = [p.detach().clone() for p in params]
    steps = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(4)]
    cfg = OptConfig(lr=1e-2, eps=1e-5, clip=clip, wd=1e-2)
    opt = Optimizer("model", params, cfg)
    norms = []
    for grads in steps:
        opt.zero_grad()
        for p, grad in zip(params, grads, strict=True):
            p.grad = grad.clone()
        norms.append(float(opt.step()["model_grad_norm"]))
    ref = naive_steps(start, steps, cfg.lr, cfg.eps, clip, cfg.wd)
    for p, r in zip(params, ref, strict=True):
        torch.testing.assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)
    want = [math.sqrt(sum(float((x * x).sum()) for x in grads)) for grads in steps]
    assert norms == pytest.approx(want, rel=1e-5)


def test_loading_a_state_keeps_this_optimizers_capture_flag():
    # A checkpoint of a run whose steps were CUDA graphs (capturable) resumes here on a CPU,
    # where the flag stays off, and its steps continue exactly as the saved optimiser's would.
    g = torch.Generator().manual_seed(1)
    cfg = OptConfig(lr=1e-2, eps=1e-5, clip=100.0, wd=0.0)
    params = [torch.nn.Parameter(torch.randn(4, generator=g))]
    grads = [torch.randn(4, generator=g) for _ in range(3)]
    saved = Optimizer("model", params, cfg)
    saved.capturable()
    params[0].grad = grads[0].clone()
    saved.step()
    state = copy.deepcopy(saved.state_dict())  # as through a checkpoint file: not shared
    assert state["param_groups"][0]["capturable"]

    other = [torch.nn.Parameter(params[0].detach().clone())]
    resumed = Optimizer("model", other, cfg)
    resumed.load_state_dict(state)
    assert not resumed.opt.param_groups[0]["capturable"]
    for grad in grads[1:]:
        for p, opt in ((params[0], saved), (other[0], resumed)):
            p.grad = grad.clone()
            opt.step()
    torch.testing.assert_close(other[0], params[0], rtol=0, atol=0)
