"""The fast update computes what the plain one computes (losses, gradients, samples), and
`blast bench` writes its documented JSON. No timing is asserted: speed lives in `blast bench`."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from blast_core.agent import ActSpace, Agent
from blast_core.agent.rssm import RSSM
from blast_core.config import RSSMConfig, make_config
from tests.agent_helpers import make_batch
from tests.ladder_helpers import blast_here
from tests.oracles import plain_path

torch.set_num_threads(1)
MINIGRID = ("minigrid:unmodified", ActSpace(True, 3))
DMC = ("dmc:walker_run", ActSpace(False, 6))
CLOSE = {"rtol": 1e-4, "atol": 1e-4}


def updated(agent: Agent, batch: dict, plain: bool, seed: int = 7):
    """A copy of `agent` after one update on the plain or the fast path: (metrics, copy)."""
    agent = copy.deepcopy(agent)
    torch.manual_seed(seed)
    with plain_path(plain):
        metrics = agent.update(batch)
    return metrics, agent


@pytest.mark.parametrize("env", [MINIGRID, DMC], ids=["minigrid", "dmc"])
@pytest.mark.parametrize("rung", ["dv2", "no_recon", "target", "bn", "ar_prior"])
def test_fast_update_has_the_plain_losses_and_gradients(rung, env):
    cfg = make_config(env[0], rung, "tiny")
    torch.manual_seed(0)
    agent = Agent(cfg, env[1])
    batch = make_batch(cfg, env[1].size, env[1].discrete)
    plain_metrics, plain = updated(agent, batch, plain=True)
    fast_metrics, fast = updated(agent, batch, plain=False)
    assert plain_metrics.keys() == fast_metrics.keys()
    for key, value in plain_metrics.items():
        assert fast_metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    # Each parameter's gradient of this update is still in .grad after the optimiser step.
    named = dict(fast.named_parameters())
    # A gradient is a sum over the whole batch: its rounding error scales with the size of the
    # terms, which the layer's largest gradient entry bounds, not with each entry's own size
    # (a conv bias under BatchNorm has a true gradient of 0 and a computed one of pure noise).
    scale: dict[str, float] = {}
    for name, p in plain.named_parameters():
        if p.grad is not None:
            layer = name.rsplit(".", 1)[0]
            scale[layer] = max(scale.get(layer, 1.0), float(p.grad.abs().max()))
    compared = 0
    for name, p in plain.named_parameters():
        if p.grad is None:
            assert named[name].grad is None, name
            continue
        atol = 1e-4 * scale[name.rsplit(".", 1)[0]]
        torch.testing.assert_close(named[name].grad, p.grad, rtol=1e-4, atol=atol, msg=name)
        compared += 1
    assert compared > 20


@pytest.mark.parametrize("stoch,ar_steps", [(4, 4), (4, 2)], ids=["one_per_group", "two"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("ar_net", ["gru", "made", "made_direct"])
def test_fast_ar_prior_samples_and_teacher_forcing_match_plain(stoch, ar_steps, grad, ar_net):
    torch.manual_seed(0)
    cfg = RSSMConfig(hidden=8, deter=8, stoch=stoch, discrete=5, ar_steps=ar_steps,
                     ar_net=ar_net.removesuffix("_direct"), ar_direct=ar_net.endswith("_direct"))
    rssm = RSSM(cfg, embed=5, actions=2)
    deter = torch.randn(6, 3, 8)
    out = {}
    for plain in (True, False):
        torch.manual_seed(1)
        with plain_path(plain), torch.set_grad_enabled(grad):
            logits, z = rssm.prior(deter)
            forced, teacher = rssm.prior(deter, teacher=z.detach())
        out[plain] = logits, z, forced, teacher
    for a, b in zip(out[True], out[False], strict=True):
        torch.testing.assert_close(a, b, **CLOSE)
    # Teacher forcing on the sampled groups gives the sampling pass's logits back.
    torch.testing.assert_close(out[False][2], out[False][0], **CLOSE)
    # And the same weight gradients (with one variable per group, from a looked-up table).
    grads = {}
    weights = torch.randn_like(out[False][2])
    for plain in (True, False):
        rssm.zero_grad()
        with plain_path(plain):
            forced, _ = rssm.prior(deter, teacher=out[False][1].detach())
        (forced * weights).sum().backward()
        grads[plain] = {n: p.grad.clone() for n, p in rssm.named_parameters() if p.grad is not None}
    first = {"gru": "prior.sample_in.0.weight", "made": "prior.inp.weight",
             "made_direct": "prior.direct.weight"}[ar_net]
    assert first in grads[False] and grads[True].keys() == grads[False].keys()
    for name, g in grads[True].items():
        torch.testing.assert_close(grads[False][name], g, **CLOSE, msg=name)


@pytest.mark.parametrize("ar_net,hidden,direct,h_share",
                         [("gru", 10, False, 0.5), ("made", 10, False, 0.5),
                          ("made", 3, False, 0.5), ("made", 10, True, 0.5),
                          ("made", 10, False, 0.8)],
                         ids=["gru", "made", "made_fewer_units_than_groups", "made_direct",
                              "made_h_share"])
def test_fast_ar_sampling_gradients_match_plain(ar_net, hidden, direct, h_share):
    """Imagination with dynamics gradients backpropagates through the straight-through chain of
    groups: the fast sampler must pass the same gradients to h and to the weights."""
    cfg = RSSMConfig(hidden=hidden, deter=8, stoch=4, discrete=5, ar_steps=4, ar_net=ar_net,
                     ar_direct=direct, ar_h_share=h_share)
    torch.manual_seed(0)
    rssm = RSSM(cfg, embed=5, actions=2)
    base = torch.randn(7, 8)
    w_logits, w_z = torch.randn(7, 4, 5), torch.randn(7, 4, 5)
    grads = {}
    for plain in (True, False):
        rssm.zero_grad()
        deter = base.clone().requires_grad_()
        torch.manual_seed(1)
        with plain_path(plain):
            logits, z = rssm.prior(deter)
        ((logits * w_logits).sum() + (z * w_z).sum()).backward()
        grads[plain] = {"deter": deter.grad, **{n: p.grad.clone() for n, p in
                                               rssm.named_parameters() if p.grad is not None}}
    assert len(grads[False]) > 4 and grads[True].keys() == grads[False].keys()
    for name, g in grads[True].items():
        torch.testing.assert_close(grads[False][name], g, **CLOSE, msg=name)


def test_fast_posterior_chain_matches_obs_step_loop():
    cfg = make_config(MINIGRID[0], "bn", "tiny")
    torch.manual_seed(0)
    agent = Agent(cfg, MINIGRID[1])
    batch = make_batch(cfg, 3, True)
    embed = agent.world_model.encoder(batch["image"].movedim(-1, -3).float() / 255 - 0.5)
    batch["is_first"][1, 3] = True  # an episode start inside a sequence
    chains = {}
    for plain in (True, False):
        torch.manual_seed(2)
        with plain_path(plain):
            chains[plain] = agent.world_model.rssm.observe(embed, batch["action"],
                                                           batch["is_first"])
    for key in chains[True]:
        torch.testing.assert_close(chains[False][key], chains[True][key], **CLOSE)


def test_the_plain_path_runs_the_oracles():
    """A comparison of the two paths means something only if they differ: on the plain path
    the posterior chain is `obs_step` in a loop, on the fast path `obs_step` is never called."""
    cfg = make_config(MINIGRID[0], "dv2", "tiny")
    agent = Agent(cfg, MINIGRID[1])
    batch = make_batch(cfg, MINIGRID[1].size, True)
    embed = agent.world_model.encoder(batch["image"].movedim(-1, -3).float() / 255 - 0.5)
    calls = {}
    for plain in (True, False):
        with plain_path(plain), mock.patch.object(RSSM, "obs_step", autospec=True,
                                                  side_effect=RSSM.obs_step) as spy:
            agent.world_model.rssm.observe(embed, batch["action"], batch["is_first"])
        calls[plain] = spy.call_count
    assert calls == {True: batch["is_first"].shape[1], False: 0}


def bench(*args: str, cwd) -> subprocess.CompletedProcess:
    preset = [] if "--preset" in args else ["--preset", "tiny"]  # given twice is an error
    cmd = [sys.executable, "-m", "blast_cli", "bench", *preset, "--reps", "1",
           "--warmup", "0", "--threads", "1", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_bench_writes_the_documented_json_and_compares_to_a_baseline(tmp_path):
    out = tmp_path / "bench.json"
    run = bench("--rung", "bn", "--rung", "ar_prior", "--json", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    doc = json.loads(out.read_text())
    assert doc["preset"] == "tiny" and doc["device"].startswith("cpu")
    assert torch.backends.cpu.get_cpu_capability() in doc["device"]  # AVX2 and AVX512 differ 2x
    assert doc["torch"] == torch.__version__ and doc["matmul_peak_gflops"] > 0
    assert doc["precision"] == "fp32"
    assert [r["rung"] for r in doc["results"]] == ["bn", "ar_prior"]
    for row in doc["results"]:
        for key in ("world_model_ms", "imagine_ms", "behavior_ms", "update_ms", "act_ms",
                    "peak_mb", "flops", "gflops_per_s", "utilization"):
            assert row[key] > 0, (row["rung"], key)
        assert isinstance(row["flops"], int)
    # The AR prior's extra GRU makes the update strictly more work than the rung below it.
    assert doc["results"][1]["flops"] > doc["results"][0]["flops"]
    assert "ar_prior" in run.stdout and "GFLOP/s" in run.stdout

    assert doc["overrides"] == {}

    # A config variant (--set) against that baseline: half the tiny preset's 4 AR groups, fewer
    # sequential GRU steps, fewer FLOPs than the baseline's ar_prior.
    variant = tmp_path / "variant.json"
    again = bench("--rung", "ar_prior", "--set", "rssm.ar_steps=2", "--baseline", str(out),
                  "--env-family", "minigrid", "--json", str(variant), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(variant.read_text())["overrides"] == {"rssm.ar_steps": "2"}
    ratios = again.stdout.split("ratios against")[1].strip().splitlines()
    ratio_line = next(line.split() for line in ratios if line.startswith("ar_prior"))
    assert 0 < float(ratio_line[-2]) < 1  # flops


@pytest.mark.parametrize("args,message", [
    (["--rung", "nope"], "unknown rung 'nope'"),
    (["--env-family", "atari"], "unknown env family 'atari'"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--precision", "fp8"], "precision: 'fp8' is not one of fp32, bf16"),
    (["--set", "rssm.ar_steps=3"], "must be >= 1 and divide rssm.stoch"),
    (["--set", "rssm.nope=1"], "rssm.nope"),
])
def test_bench_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message, capsys,
                                                        monkeypatch):
    # In this process (no interpreter start-up per case): each fails before timing anything.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    preset = [] if "--preset" in args else ["--preset", "tiny"]
    code, _, err = blast_here(capsys, "bench", *preset, "--reps", "1", "--warmup", "0",
                              *args, "--json", str(out))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kernel", [5, 6])
def test_subpixel_transposed_conv_matches_torch(kernel):
    from blast_core.agent.nets import _SubPixelConvT

    torch.manual_seed(0)
    x = torch.randn(4, 6, 7, 7, requires_grad=True)
    weight = torch.randn(6, 3, kernel, kernel, requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    outs = []
    for fn in (lambda: torch.nn.functional.conv_transpose2d(x, weight, bias, stride=2),
               lambda: _SubPixelConvT.apply(x, weight, bias)):
        y = fn()
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        outs.append([y.detach(), *(t.grad.clone() for t in (x, weight, bias))])
        for t in (x, weight, bias):
            t.grad = None
    assert outs[0][0].shape == (4, 3, 12 + kernel, 12 + kernel)
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(b, a, **CLOSE)


def test_freed_memory_is_kept_on_glibc_unless_turned_off(monkeypatch):
    from blast_core.agent.perf import keep_freed_memory

    assert keep_freed_memory() is sys.platform.startswith("linux")  # glibc's mallopt
    assert keep_freed_memory(enabled=False) is False
    # The CLI reads the environment variable into the runtime's switches, nothing below it.
    from blast_cli.options import runtime_switches

    assert runtime_switches() == {"graph_behavior": False, "keep_freed_memory": True}
    monkeypatch.setenv("BLAST_KEEP_FREED_MEMORY", "0")
    monkeypatch.setenv("BLAST_GRAPH_BEHAVIOR", "1")
    assert runtime_switches() == {"graph_behavior": True, "keep_freed_memory": False}


@pytest.mark.parametrize("needs_z_grad", [False, True], ids=["no_z_grad", "z_grad"])
def test_onehot_linear_is_the_dense_layer_on_feat(needs_z_grad):
    from blast_core.agent.dists import OneHot
    from blast_core.agent.nets import onehot_linear

    torch.manual_seed(0)
    groups, classes, deter = 4, 5, 3
    layer = torch.nn.Linear(groups * classes + deter, 6)
    logits = torch.randn(2, 7, groups, classes, requires_grad=needs_z_grad)
    z = OneHot(logits, dims=1).sample()              # straight-through: values (1 + p) - p
    z = z * (torch.arange(7) != 3).float()[None, :, None, None]  # a reset state: z = 0
    h = torch.randn(2, 7, deter, requires_grad=True)
    feat = torch.cat([z.flatten(-2), h], -1)
    outs = []
    for fn in (layer, lambda x: onehot_linear(x, layer, groups, classes)):
        y = fn(feat)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(),
                                    [layer.weight, layer.bias, h]
                                    + ([logits] if needs_z_grad else []), retain_graph=True)
        outs.append([y, *grads])
    assert outs[0][0].shape == (2, 7, 6)
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(b, a, **CLOSE)


def test_onehot_gathers_only_in_fp32_on_the_cpu():
    from blast_core.agent.nets import gather_ok

    x = torch.zeros(2, 3)
    assert gather_ok(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not gather_ok(x)
    assert not gather_ok(torch.zeros(2, 3, device="meta"))  # any device but the CPU


def test_bench_run_times_a_whole_run_and_its_phases(tmp_path):
    out = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "blast_cli", "bench", "--run", "--preset", "tiny", "--steps",
           "400", "--json", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())["run"]
    assert (doc["rung"], doc["preset"], doc["steps"], doc["threads"]) == ("dv2", "tiny", 400, 1)
    phases = doc["phases_s"]
    assert set(phases) == {"act", "env", "replay", "update", "eval", "save"}
    assert all(v > 0 for v in phases.values()), phases  # the tiny run trains, evaluates, saves
    assert sum(phases.values()) + doc["import_s"] <= doc["wall_s"]
    assert doc["steps_per_s"] == pytest.approx(400 / doc["wall_s"])
    assert "whole run" in done.stdout and "loop: update" in done.stdout
    assert not Path(doc["root"]).exists()  # its throwaway results root is removed


def test_bench_run_refuses_two_runs_at_once(tmp_path):
    done = bench("--run", "--rung", "dv2", "--rung", "bn", cwd=tmp_path)
    assert done.returncode == 2 and "at most one --env and one --rung" in done.stderr


def test_onehot_index_is_argmax_and_gather_of_straight_through_samples():
    from blast_core.agent.dists import OneHot
    from blast_core.agent.nets import onehot_index

    torch.manual_seed(0)
    logits = (torch.randn(512, 16, 32) * 3).requires_grad_(True)
    z = OneHot(logits, dims=1).sample().detach().clone()  # (1 + p) − p: within an ulp of 1
    z[::7] = 0  # reset states
    index, value = onehot_index(z)
    expected = z.argmax(-1)
    assert torch.equal(index, expected)
    assert torch.equal(value, z.gather(-1, expected[..., None]).squeeze(-1))
    assert (value[::7] == 0).all() and (value[1::7] != 0).all()
