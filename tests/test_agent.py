"""The agent on the tiny preset: the AR prior, the target encoder, −recon, BatchNorm modes, the
DV2 equivalence, one update of every rung, and overfitting a fixed batch."""

import dataclasses
import itertools
import types

import pytest
import torch

from blast_core.agent import ActSpace, Agent
from blast_core.agent.rssm import RSSM
from blast_core.agent.runtime import Runtime
from blast_core.config import RUNG_IDS, RSSMConfig, make_config
from blast_core.errors import ConfigError
from tests.agent_helpers import make_batch

torch.set_num_threads(1)
MINIGRID = ("minigrid:unmodified", ActSpace(True, 3))
DMC = ("dmc:walker_run", ActSpace(False, 6))


def build(rung, env=MINIGRID, seed=0, switches=None, **overrides):
    cfg = make_config(env[0], rung, "tiny", overrides)
    torch.manual_seed(seed)
    agent = Agent(cfg, env[1], runtime=Runtime.of(cfg, **(switches or {})))
    return agent, make_batch(cfg, env[1].size, env[1].discrete, seed)


def small_ar_rssm(stoch=2, discrete=3, ar_steps=2, ar_net="gru", ar_hidden=0, ar_direct=False,
                  ar_h_share=0.5):
    torch.manual_seed(0)
    cfg = RSSMConfig(hidden=8, deter=8, stoch=stoch, discrete=discrete, ar_steps=ar_steps,
                     ar_net=ar_net, ar_hidden=ar_hidden, ar_direct=ar_direct,
                     ar_h_share=ar_h_share)
    return RSSM(cfg, embed=5, actions=2), cfg


AR_NETS = pytest.mark.parametrize("ar_net", ["gru", "made"])


@pytest.mark.parametrize("ar_net,ar_hidden,ar_direct,ar_h_share",
                         [("gru", 0, False, 0.5), ("made", 0, False, 0.5),
                          ("made", 20, False, 0.5), ("made", 0, True, 0.5),
                          ("made", 0, False, 0.75)])
def test_ar_prior_joint_probabilities_sum_to_one(ar_net, ar_hidden, ar_direct, ar_h_share):
    # Only true if each group's conditional reads h and the groups before it, nothing after.
    rssm, cfg = small_ar_rssm(stoch=3, discrete=3, ar_steps=3, ar_net=ar_net, ar_hidden=ar_hidden,
                              ar_direct=ar_direct, ar_h_share=ar_h_share)
    if ar_hidden:
        assert rssm.prior.out.weight.shape == (ar_hidden, ar_hidden)
    if ar_net == "made" and not ar_hidden:  # group i reads the units of degree <= i
        assert rssm.prior.ends == {0.5: [4, 6, 8], 0.75: [6, 7, 8]}[ar_h_share]
    if ar_direct:  # the direct map is there and not masked to nothing
        assert rssm.prior.direct.weight.shape == (9, 9)
        with torch.no_grad():
            rssm.prior.direct.weight.mul_(3)
    deter = torch.randn(4, cfg.deter)
    total = torch.zeros(4)
    for config in itertools.product(range(cfg.discrete), repeat=cfg.stoch):
        z = torch.nn.functional.one_hot(torch.tensor(config), cfg.discrete).float()
        z = z.expand(4, -1, -1)
        logits, _ = rssm.prior(deter, teacher=z)
        logp = (z * logits.log_softmax(-1)).sum((-2, -1))
        total += logp.exp()
    torch.testing.assert_close(total, torch.ones(4))


@AR_NETS
def test_ar_prior_teacher_forced_equals_sequential(ar_net):
    rssm, cfg = small_ar_rssm(stoch=4, discrete=5, ar_steps=2, ar_net=ar_net)  # two per group
    deter = torch.randn(6, 3, cfg.deter)  # any leading shape: [B, T] in training
    torch.manual_seed(1)
    logits_seq, z = rssm.prior(deter, sample=True)
    logits_tf, _ = rssm.prior(deter, teacher=z.detach())
    torch.testing.assert_close(logits_tf, logits_seq)
    # And the teacher matters: another z gives other logits for the later groups.
    logits_other, _ = rssm.prior(deter, teacher=torch.roll(z.detach(), 1, -1))
    torch.testing.assert_close(logits_other[..., :2, :], logits_seq[..., :2, :])
    assert not torch.allclose(logits_other[..., 2:, :], logits_seq[..., 2:, :])


def test_ema_target_gets_no_gradient_and_moves_by_tau():
    agent, batch = build("target")
    world_model = agent.world_model
    for a, b in zip(world_model.target_encoder.parameters(), world_model.encoder.parameters(),
                    strict=True):
        torch.testing.assert_close(a, b)  # starts as a copy (the project's decision)
    agent.update(batch)  # move the online encoder away from the target
    before = [p.detach().clone() for p in world_model.target_encoder.parameters()]
    model_loss, *_ = world_model.loss(batch)
    model_loss.backward()
    target = world_model.target_encoder.parameters()
    assert all(p.grad is None and not p.requires_grad for p in target)
    world_model.opt.step()
    online = [p.detach().clone() for p in world_model.encoder.parameters()]
    world_model.update_target()
    tau = world_model.cfg.target.ema
    assert tau == 0.99
    for t, old, new in zip(world_model.target_encoder.parameters(), before, online, strict=True):
        torch.testing.assert_close(t, tau * old + (1 - tau) * new)


def test_no_recon_decoder_sends_no_gradient_into_encoder_or_rssm():
    agent, batch = build("no_recon")
    world_model = agent.world_model
    assert world_model.probe and world_model.probe_opt is not None
    model_ids = {id(p) for p in world_model.opt.params}
    assert not any(id(p) in model_ids for p in world_model.decoder.parameters())
    _, probe_loss, _, metrics = world_model.loss(batch)
    probe_loss.backward()
    assert all(p.grad is None for p in world_model.encoder.parameters())
    assert all(p.grad is None for p in world_model.rssm.parameters())
    decoder = world_model.decoder.parameters()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder)
    # In dv2 the same decoder loss does reach the encoder.
    dv2, batch = build("dv2")
    model_loss, probe_loss, _, _ = dv2.world_model.loss(batch)
    assert float(probe_loss) == 0 and not dv2.world_model.probe
    model_loss.backward()
    assert any(p.grad.abs().sum() > 0 for p in dv2.world_model.encoder.parameters())


@pytest.mark.parametrize("rung", ["no_recon", "ar_prior"])
def test_probe_fraction_changes_only_the_probe(rung):
    """The probe decoder trained on a quarter of the sequences or on all of them: every other
    parameter and the agent's metrics stay the same. (Bit for bit here; the tolerance only
    allows for kernels whose rounding depends on memory alignment, while any real coupling
    would move a parameter by about the learning rate per update.)"""
    runs = {}
    for fraction in (0.25, 1.0):
        agent, batch = build(rung, env=DMC, **{"decoder.probe_fraction": fraction,
                                               "dataset.batch": 4})
        torch.manual_seed(1)
        for _ in range(3):
            metrics = agent.update(batch)
        runs[fraction] = agent, metrics
    (quarter, m_quarter), (whole, m_whole) = runs[0.25], runs[1.0]
    named = dict(whole.named_parameters())
    for name, p in quarter.named_parameters():
        if name.startswith("world_model.decoder."):
            assert not torch.equal(p, named[name]), name  # the probe did learn differently
        else:
            torch.testing.assert_close(p, named[name], rtol=0, atol=1e-7, msg=name)
    for key in ("model_loss", "kl", "reward_loss", "actor_loss", "critic_loss"):
        assert m_quarter[key] == pytest.approx(m_whole[key], rel=1e-6), key
    assert m_quarter["image_loss"] != m_whole["image_loss"]


def test_probe_fraction_reads_the_first_sequences_and_is_ignored_without_probe():
    frames = []
    agent, batch = build("no_recon", **{"decoder.probe_fraction": 0.5, "dataset.batch": 4})
    agent.world_model.decoder.register_forward_hook(lambda m, inp, out: frames.append(inp[0].shape))
    agent.world_model.loss(batch)
    assert frames[-1][0] == 2  # 2 of 4 sequences
    dv2, batch = build("dv2", **{"decoder.probe_fraction": 0.5, "dataset.batch": 4})
    dv2.world_model.decoder.register_forward_hook(lambda m, inp, out: frames.append(inp[0].shape))
    dv2.world_model.loss(batch)
    assert frames[-1][0] == 4  # the reconstruction loss sees every sequence
    with pytest.raises(ConfigError, match="probe_fraction"):
        make_config(MINIGRID[0], "bn", "tiny", {"decoder.probe_fraction": 0})


def test_batchnorm_trains_in_loss_and_is_frozen_when_acting():
    agent, batch = build("bn")
    bns = [m for m in agent.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) >= 2 * 4 + 1  # online and target encoder convs + the posterior layer
    modes = []
    hooks = [m.register_forward_hook(lambda m, i, o: modes.append(m.training)) for m in bns]
    agent.update(batch)
    assert modes and all(modes)
    modes.clear()
    stats = [m.running_mean.clone() for m in bns]
    obs = {"image": batch["image"][:, 0], "is_first": batch["is_first"][:, 0]}
    agent.policy(obs, None, "eval")
    assert modes and not any(modes)
    for m, s in zip(bns, stats, strict=True):
        torch.testing.assert_close(m.running_mean, s)
    for h in hooks:
        h.remove()


def test_dv2_is_the_model_with_every_blast_switch_off():
    cfg_dv2 = make_config("minigrid:unmodified", "dv2", "tiny")
    blast = make_config("minigrid:unmodified", "ar_prior", "tiny")
    off = dataclasses.replace(
        blast,
        grad_heads=("decoder", "reward"),
        kl=dataclasses.replace(blast.kl, balance=0.8),
        target=dataclasses.replace(blast.target, use=False, ema=1.0, input_p=0.0),
        encoder=dataclasses.replace(blast.encoder, norm="none"),
        rssm=dataclasses.replace(blast.rssm, obs_out_norm="none", ar_steps=1),
    )
    assert off == cfg_dv2
    act = ActSpace(True, 3)
    batch = make_batch(cfg_dv2, 3, True)
    metrics = []
    for cfg in (cfg_dv2, off):
        torch.manual_seed(3)
        agent = Agent(cfg, act)
        torch.manual_seed(4)
        metrics.append(agent.update(batch))
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize("env", [MINIGRID, DMC], ids=["minigrid", "dmc"])
@pytest.mark.parametrize("rung", RUNG_IDS)
def test_one_update_of_every_rung_changes_parameters(rung, env):
    agent, batch = build(rung, env)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    metrics = agent.update(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    for key in ("model_loss", "kl", "actor_loss", "critic_loss", "actor_ent"):
        assert key in metrics
    after = agent.state_dict()
    for prefix in ("world_model.encoder.", "world_model.rssm.", "world_model.heads.",
                   "behavior.actor.", "behavior.critic."):
        changed = [k for k in before if k.startswith(prefix)
                   and before[k].is_floating_point() and not torch.equal(before[k], after[k])]
        assert changed, f"{prefix} did not change in {rung}"


@pytest.mark.parametrize("env", [MINIGRID, DMC], ids=["minigrid", "dmc"])
def test_one_update_with_the_made_ar_prior(env):
    # DMC's dynamics gradients run backwards through the sampled groups of imagination. Free nats
    # off, so that the KL (below DMC's 1 nat at init) reaches the prior.
    agent, batch = build("ar_prior", env, **{"rssm.ar_net": "made", "kl.free": 0.0})
    assert type(agent.world_model.rssm.prior).__name__ == "MADEPrior"
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    metrics = agent.update(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    after = agent.state_dict()
    made = [k for k in before if k.startswith("world_model.rssm.prior.")]
    assert len(made) == 6 and all(not torch.equal(before[k], after[k]) for k in made)
    actor = [k for k in before if k.startswith("behavior.actor.")]
    assert any(not torch.equal(before[k], after[k]) for k in actor)


@pytest.mark.parametrize("whole_behavior", [False, True])
def test_cuda_graphs_setting_changes_nothing_off_gpu(whole_behavior):
    # The graphed steps are a CUDA-only path (checked on a GPU by benchmarks/gpu_graphs_check.py);
    # elsewhere the setting must leave the update exactly as it is.
    metrics, states = [], []
    for on in (False, True):
        agent, batch = build("bn", switches={"graph_behavior": whole_behavior},
                             **{"cuda_graphs": on})
        torch.manual_seed(1)
        metrics.append(agent.update(batch))
        states.append(agent.state_dict())
        behavior = agent.behavior
        assert behavior.graphed_imagine is None and behavior.graphed_step is None
        assert agent.world_model.graphed_step is None
    assert metrics[0] == metrics[1]
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, rtol=0, atol=0, msg=key)


def test_runtime_graphs_only_on_a_gpu_in_fp32_and_not_eager():
    # `blast bench` counts FLOPs and live tensors of a graphed GPU agent with `eager` set: a
    # replay runs no op that torch's counters see. Only `is_cuda` of the example is read.
    gpu = types.SimpleNamespace(is_cuda=True)
    graphed = Runtime("cuda:0", "fp32", cuda_graphs=True)
    assert graphed.graphs(gpu) and not graphed.replace(eager=True).graphs(gpu)
    assert not graphed.replace(cuda_graphs=False).graphs(gpu)
    assert not graphed.replace(precision="bf16").graphs(gpu)
    assert not graphed.graphs(torch.zeros(1))
    # An agent hands its runtime to both halves, and to both again when it changes.
    agent, _ = build("bn", switches={"graph_behavior": True})
    assert agent.world_model.runtime is agent.behavior.runtime is agent.runtime
    assert agent.runtime.graph_behavior and agent.runtime.cuda_graphs
    agent.set_runtime(agent.runtime.replace(eager=True))
    assert agent.world_model.runtime.eager and agent.behavior.runtime.eager


@pytest.mark.parametrize("rung,ar_net", [("dv2", "gru"), ("ar_prior", "gru"), ("ar_prior", "made")])
def test_world_model_overfits_a_fixed_batch(rung, ar_net):
    agent, batch = build(rung, **{"model_opt.lr": 3e-3, "rssm.ar_net": ar_net})
    first = None
    for _ in range(150):
        model_loss, probe_loss, _, _ = agent.world_model.loss(batch)
        agent.world_model.opt.zero_grad()
        model_loss.backward()
        agent.world_model.opt.step()
        agent.world_model.update_target()
        first = float(model_loss.detach()) if first is None else first
    last = float(model_loss.detach())
    assert last < first / 5, (first, last)


def test_policy_acts_in_both_modes_and_carries_state():
    for env in (MINIGRID, DMC):
        agent, batch = build("ar_prior", env)
        obs = {"image": batch["image"][:, 0], "is_first": batch["is_first"][:, 0]}
        action, state = agent.policy(obs, None, "train")
        assert action.shape == (batch["image"].shape[0], env[1].size)
        if env[1].discrete:
            torch.testing.assert_close(action.sum(-1), torch.ones(action.shape[0]))
            assert set(action.round().unique().tolist()) <= {0.0, 1.0}
        else:
            assert float(action.abs().max()) < 1
        greedy, _ = agent.policy(obs, state, "eval")
        again, _ = agent.policy(obs, state, "eval")
        torch.testing.assert_close(greedy, again)  # the mode is deterministic


def test_open_loop_reconstruction_shapes():
    agent, batch = build("no_recon")
    truth, recon = agent.world_model.open_loop(batch, context=3, horizon=4)
    assert truth.shape == recon.shape == (batch["image"].shape[0], 4, 64, 64, 3)
    assert recon.dtype == torch.uint8
    # `seen` puts the last filtered frame first; the imagined ones after it are the same rollout.
    torch.manual_seed(1)
    plain = agent.world_model.open_loop(batch, context=3, horizon=4, sample=False)
    torch.manual_seed(1)
    truth, recon = agent.world_model.open_loop(batch, context=3, horizon=4, sample=False,
                                               seen=True)
    assert truth.shape == recon.shape == (batch["image"].shape[0], 5, 64, 64, 3)
    assert torch.equal(truth[:, 0], batch["image"][:, 2]) and torch.equal(truth[:, 1:], plain[0])
    assert (recon[:, 1:].int() - plain[1].int()).abs().max() <= 1  # one decoder call, not two


def test_checkpoint_state_round_trips_with_weights_only(tmp_path):
    agent, batch = build("ar_prior")
    agent.update(batch)
    path = tmp_path / "agent.pt"
    torch.save(agent.checkpoint_state(), path)
    other, _ = build("ar_prior", seed=9)
    other.load_checkpoint_state(torch.load(path, weights_only=True))
    for (k, a), b in zip(agent.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    torch.manual_seed(5)
    m1 = agent.update(batch)
    torch.manual_seed(5)
    m2 = other.update(batch)
    assert m1 == m2


@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_slow_critic_follows_the_critic_every_slow_update_updates(fraction):
    # Update 0 copies the critic; then every `every` updates mix `fraction` of it in (spec §2.5);
    # between them the slow critic does not move at all.
    every = 3
    agent, _ = build("dv2", **{"critic.slow_update": every, "critic.slow_fraction": fraction})
    ac = agent.behavior
    g = torch.Generator().manual_seed(0)
    ref = None
    for k in range(8):
        with torch.no_grad():  # as training would have moved the critic
            for p in ac.critic.parameters():
                p.add_(torch.randn(p.shape, generator=g))
        critic = [p.detach().double().clone() for p in ac.critic.parameters()]
        before = [p.clone() for p in ac.slow_critic.parameters()]
        ac.update_slow()
        assert int(ac.updates) == k + 1
        if k == 0:
            ref = critic
        elif k % every == 0:
            ref = [r + fraction * (c - r) for r, c in zip(ref, critic, strict=True)]
        else:
            assert all(torch.equal(a, b) for a, b in zip(
                ac.slow_critic.parameters(), before, strict=True))
        for slow, r in zip(ac.slow_critic.parameters(), ref, strict=True):
            torch.testing.assert_close(slow.double(), r, rtol=1e-6, atol=1e-6)
