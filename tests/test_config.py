"""Config resolution, the ladder as deltas, overrides, and the `blast config` commands."""

import dataclasses
import subprocess
import sys

import pytest
import yaml

from blast_core import config as C
from blast_core.config import tree as T

ENVS = ["minigrid:unmodified", "dmc:walker_run"]


def flat(cfg):
    return T.flatten(T.to_dict(cfg))


def diff(a, b):
    fa, fb = flat(a), flat(b)
    return {k: fb[k] for k in fa if fa[k] != fb[k]}


@pytest.mark.parametrize("env", ENVS)
def test_each_rung_differs_from_the_one_before_only_by_its_delta(env):
    want = {
        "no_recon": {"grad_heads": ["reward"]},
        "stop_grad": {"kl.balance": 1.0},
        "target": {"target.use": True, "target.ema": 0.99, "target.input_p": 0.5},
        "bn": {"encoder.norm": "batch", "rssm.obs_out_norm": "batch"},
        "ar_prior": {"rssm.ar_steps": 16 if env.startswith("minigrid") else 8},
        "latent_only": {"grad_heads": []},
    }
    chain = [*C.LADDER_IDS, "latent_only"]
    for prev, rung in zip(chain, chain[1:], strict=False):
        assert diff(C.make_config(env, prev), C.make_config(env, rung)) == want[rung], rung


def test_family_values_follow_the_paper_table():
    mg = C.make_config("minigrid:video", "dv2")
    assert (mg.rssm.hidden, mg.rssm.deter, mg.rssm.stoch, mg.rssm.discrete) == (600, 600, 16, 64)
    assert mg.loss_scales.kl == 0.1 and mg.loss_scales.reward == 100.0
    assert mg.schedule.train_every == 1 and mg.schedule.prefill == 10_000 and not mg.pred_discount
    assert mg.actor.grad == "reinforce" and mg.clip_rewards == "tanh" and mg.kl.balance == 0.8
    dmc = C.make_config("dmc:cheetah_run", "dv2")
    assert (dmc.rssm.hidden, dmc.rssm.stoch, dmc.rssm.discrete) == (200, 8, 64)
    assert dmc.actor.grad == "dynamics" and dmc.kl.free == 1.0 and dmc.env.action_repeat == 2
    assert dmc.clip_rewards == "identity" and not dmc.replay.prioritize_ends
    for cfg in (mg, dmc):  # DreamerV2's optimiser everywhere
        for opt in (cfg.model_opt, cfg.actor_opt, cfg.critic_opt):
            assert (opt.eps, opt.clip, opt.wd) == (1e-5, 100.0, 1e-6)


def test_dv2_rung_is_config_defaults_with_blast_switches_off():
    cfg = C.make_config("minigrid:unmodified", "dv2")
    assert not cfg.target.use and cfg.rssm.ar_steps == 1 and cfg.encoder.norm == "none"
    assert cfg.rssm.obs_out_norm == "none" and "decoder" in cfg.grad_heads
    assert C.Config().target == cfg.target and C.Config().encoder == cfg.encoder


def test_overrides_are_type_checked_and_ar_steps_follows_stoch():
    cfg = C.make_config("minigrid:unmodified", "ar_prior", "paper",
                        T.parse_overrides(["rssm.stoch=8", "model_opt.lr=1e-3",
                                           "grad_heads=reward,discount", "kl.free_avg=false"]))
    assert cfg.rssm.stoch == 8 and cfg.rssm.ar_steps == 8  # the official code's 8 x 64
    assert cfg.model_opt.lr == 1e-3 and cfg.grad_heads == ("reward", "discount")
    assert cfg.kl.free_avg is False
    bad = [("rssm.stoch=abc", "expected an integer"), ("rssm.stoch=2.5", "expected an integer"),
           ("rssm.foo=1", "unknown config key"), ("rssm=1", "is a section"),
           ("encoder.norm=layer", "is not one of"), ("kl.free_avg=maybe", "true or false"),
           ("grad_heads=decoder,value", "unknown head"), ("rssm.ar_steps=3", "divide"),
           ("rssm.ar_hidden=-1", "ar_hidden"), ("rssm.ar_h_share=1", r"ar_h_share=1.0 must"),
           ("nokey", "key=value")]
    for item, message in bad:
        with pytest.raises(C.ConfigError, match=message):
            C.make_config("minigrid:unmodified", "ar_prior", "paper", T.parse_overrides([item]))
    # The same key twice: one value is fine, two are an error (never the last one winning).
    assert T.parse_overrides(["rssm.stoch=8", " rssm.stoch = 8"]) == {"rssm.stoch": "8"}
    with pytest.raises(C.ConfigError, match=r"--set rssm.stoch is given twice \(8, then 32\)"):
        T.parse_overrides(["rssm.stoch=8", "model_opt.lr=1e-3", "rssm.stoch=32"])


def test_bad_env_rung_preset_are_config_errors():
    for args, message in [(("foo",), "bad env id"), (("minigrid:x",), "unknown MiniGrid variant"),
                          (("minigrid:video", "top"), "unknown rung"),
                          (("dmc:walker_run", "dv2", "huge"), "unknown preset")]:
        with pytest.raises(C.ConfigError, match=message):
            C.make_config(*args)


def test_round_trip_through_dict_and_yaml():
    for rung in C.RUNG_IDS:
        cfg = C.make_config("dmc:walker_run", rung, "tiny")
        assert T.from_dict(yaml.safe_load(T.to_yaml(cfg)), C.Config) == cfg


def test_every_field_has_a_docstring():
    def walk(cls):
        for f in dataclasses.fields(cls):
            assert T.field_doc(cls, f.name), f"{cls.__name__}.{f.name} has no docstring"
            if dataclasses.is_dataclass(f.type) or (isinstance(f.type, str) and f.type.endswith(
                    "Config") or f.type in ("LossScales",)):
                walk(getattr(C, f.type) if isinstance(f.type, str) else f.type)
    walk(C.Config)


def test_tiny_preset_is_small():
    cfg = C.make_config("minigrid:unmodified", "ar_prior", "tiny")
    assert cfg.rssm.deter <= 32 and cfg.encoder.depth <= 8 and cfg.dataset.batch <= 4


def blast(*args):
    return subprocess.run([sys.executable, "-m", "blast_cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_config_show_and_diff():
    out = blast("config", "show", "--env", "dmc:walker_run", "--rung", "bn", "--preset", "tiny",
                "--set", "rssm.deter=24")
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert shown["rssm"]["deter"] == 24 and shown["encoder"]["norm"] == "batch"
    assert T.from_dict(shown, C.Config) == C.make_config("dmc:walker_run", "bn", "tiny",
                                               {"rssm.deter": "24"})
    out = blast("config", "diff", "--env", "minigrid:smaller_agent", "bn", "ar_prior")
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout) == {"rssm.ar_steps": {"bn": 1, "ar_prior": 16}}


@pytest.mark.parametrize("args", [
    ["config", "show", "--env", "atari:pong"],
    ["config", "show", "--env", "minigrid:tiny_agent"],
    ["config", "show", "--rung", "plus_everything"],
    ["config", "show", "--preset", "huge"],
    ["config", "show", "--set", "rssm.nope=3"],
    ["config", "diff", "dv2", "nope"],
])
def test_cli_bad_input_is_one_line_without_traceback(args):
    out = blast(*args)
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr and out.stdout == ""
