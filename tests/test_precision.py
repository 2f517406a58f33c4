"""`precision=bf16`: matmuls and convolutions under bf16 autocast, everything that accumulates or
defines a distribution in fp32, and an update close to the fp32 one on the same batch."""

import copy

import pytest
import torch

from blast_core.agent import ActSpace, Agent
from blast_core.agent.perf import autocast
from blast_core.config import ConfigError, make_config
from tests.agent_helpers import make_batch

torch.set_num_threads(1)
MINIGRID = ("minigrid:unmodified", ActSpace(True, 3))
DMC = ("dmc:walker_run", ActSpace(False, 6))


def agent_and_batch(env, rung, precision, **overrides):
    cfg = make_config(env[0], rung, "tiny", {"precision": precision, **overrides})
    torch.manual_seed(0)
    return Agent(cfg, env[1]), make_batch(cfg, env[1].size, env[1].discrete)


def grads(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


@pytest.mark.parametrize("env", [MINIGRID, DMC], ids=["minigrid", "dmc"])
@pytest.mark.parametrize("rung,ar_net", [("dv2", "gru"), ("bn", "gru"), ("ar_prior", "gru"),
                                         ("ar_prior", "made")],
                         ids=["dv2", "bn", "ar_prior", "ar_prior_made"])
def test_bf16_update_is_close_to_the_fp32_update(env, rung, ar_net):
    fp32, batch = agent_and_batch(env, rung, "fp32", **{"rssm.ar_net": ar_net})
    bf16 = copy.deepcopy(fp32)
    bf16.cfg = bf16.world_model.cfg = bf16.behavior.cfg = make_config(
        env[0], rung, "tiny", {"precision": "bf16", "rssm.ar_net": ar_net})
    metrics = {}
    for name, agent in (("fp32", fp32), ("bf16", bf16)):
        torch.manual_seed(1)
        metrics[name] = agent.update(batch)
    for key in ("model_loss", "kl", "image_loss", "reward_loss"):
        assert metrics["bf16"][key] == pytest.approx(metrics["fp32"][key], rel=0.01, abs=0.01), key
    # Imagination samples actions and latents: a probability that moved in bf16 can flip a
    # sample, so the behaviour losses are only near each other.
    for key in ("actor_loss", "critic_loss"):
        assert metrics["bf16"][key] == pytest.approx(metrics["fp32"][key], rel=0.1), key
    # bf16 did run: the two updates are not the same numbers.
    assert any(metrics["bf16"][k] != metrics["fp32"][k] for k in metrics["fp32"])
    for part in ("world_model", "behavior"):
        a, b = grads(getattr(fp32, part)), grads(getattr(bf16, part))
        assert torch.nn.functional.cosine_similarity(a, b, 0) > 0.99, part
    assert all(p.dtype == torch.float32 for p in bf16.parameters())


def test_bf16_runs_convolutions_in_bf16_and_keeps_state_and_distributions_in_fp32():
    agent, batch = agent_and_batch(MINIGRID, "ar_prior", "bf16")
    seen = {}

    def record(module, inputs, output) -> None:
        seen["conv"] = output.dtype

    agent.world_model.encoder.net[0].register_forward_hook(record)
    with autocast("bf16", torch.device("cpu")):
        _, _, start, _ = agent.world_model.loss(batch)
        recon = agent.world_model.decoder(agent.world_model.rssm.feat(start))
        prior_logits, prior_stoch = agent.world_model.rssm.prior(start["deter"][:, 0])
    assert seen["conv"] == torch.bfloat16
    for tensor in (*start.values(), recon, prior_logits, prior_stoch):
        assert tensor.dtype == torch.float32
    action, (latent, _) = agent.policy({"image": batch["image"][:, 0],
                                        "is_first": batch["is_first"][:, 0]}, None)
    assert action.dtype == latent["deter"].dtype == torch.float32


def test_precision_is_checked():
    with pytest.raises(ConfigError, match="precision: 'fp16' is not one of fp32, bf16"):
        make_config(MINIGRID[0], "dv2", "tiny", {"precision": "fp16"})
