"""Checkpoints: atomic writes, keeping two, safe loading, fallback on damage, and RNG states."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from blast_core.agent import ActSpace, Agent
from blast_core.agent.agent import renamed
from blast_core.agent.runtime import Runtime
from blast_core.config import make_config
from blast_core.run.checkpoint import (
    CheckpointError,
    Checkpoints,
    NewerCheckpoint,
    rng_state,
    set_rng_state,
)


def state(value: float) -> dict:
    return {"net": {"w": torch.full((3, 3), value)}, "step": int(value), "name": "x", "none": None}


def test_save_and_load_round_trip_keeping_the_last_two(tmp_path):
    ckpts = Checkpoints(tmp_path)
    for step in (10, 20, 30):
        ckpts.save(step, state(step))
    assert [s for s, _ in ckpts.paths()] == [20, 30]
    assert not list(tmp_path.glob("*.tmp"))
    step, loaded = ckpts.latest()
    assert step == 30 and torch.equal(loaded["net"]["w"], torch.full((3, 3), 30.0))
    assert loaded["name"] == "x" and loaded["none"] is None


def test_truncated_latest_falls_back_to_the_previous_with_a_message(tmp_path):
    messages = []
    ckpts = Checkpoints(tmp_path, warn=messages.append)
    ckpts.save(10, state(10))
    path = ckpts.save(20, state(20))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    step, loaded = ckpts.latest()
    assert step == 10 and loaded["step"] == 10
    assert len(messages) == 1 and "ckpt-0000000020.pt" in messages[0]
    assert "falling back" in messages[0]
    assert (tmp_path / "ckpt-0000000020.pt.corrupt").exists()
    assert ckpts.latest()[0] == 10 and len(messages) == 1  # never tried again


def test_unfinished_temporary_is_ignored(tmp_path):
    ckpts = Checkpoints(tmp_path)
    ckpts.save(10, state(10))
    (tmp_path / "ckpt-0000000020.pt.tmp").write_bytes(b"partial")
    assert ckpts.latest()[0] == 10
    assert not (tmp_path / "ckpt-0000000020.pt.tmp").exists()


def test_no_checkpoint_and_all_damaged(tmp_path):
    ckpts = Checkpoints(tmp_path, warn=lambda m: None)
    assert ckpts.latest() is None
    (tmp_path / "ckpt-0000000005.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        ckpts.latest()


def test_a_newer_blasts_checkpoint_is_an_error_and_is_left_as_it_is(tmp_path):
    ckpts = Checkpoints(tmp_path, warn=lambda m: pytest.fail(m))
    ckpts.save(10, state(10))
    newer = tmp_path / "ckpt-0000000020.pt"
    torch.save({"format": "blast-checkpoint", "version": 2, "step": 20, "state": state(20)},
               newer)
    with pytest.raises(NewerCheckpoint, match="newer blast .*format 2.*update blast"):
        ckpts.latest()
    assert newer.exists()  # neither set aside as corrupt nor passed over for step 10


class Payload:
    """A class torch.load(weights_only=True) refuses to build."""

    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_loading_refuses_arbitrary_pickles(tmp_path, capsys):
    torch.save({"format": "blast-checkpoint", "version": 1, "state": Payload()},
               tmp_path / "ckpt-0000000001.pt")
    messages = []
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        Checkpoints(tmp_path, warn=messages.append).latest()
    assert "unreadable" in messages[0]
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ckpts = Checkpoints(tmp_path)
    ckpts.save(1, {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(ckpts.latest()[1]["rng"])
    got = (random.random(), np.random.rand(), torch.rand(2))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


# Keys and shapes of each tiny agent's checkpoint at 0a8d54d, recorded by that commit's code:
# before the world model was `world_model` (it was `wm`) and the priors were classes.
OLD_KEYS = Path(__file__).parent / "data" / "checkpoint-keys-0a8d54d.json"
AGENTS = {"dv2": ("dv2", {}), "bn": ("bn", {}), "ar_prior": ("ar_prior", {}),
          "ar_prior_made": ("ar_prior", {"rssm.ar_net": "made", "rssm.ar_direct": True})}


@pytest.mark.parametrize("case", AGENTS)
def test_a_checkpoint_from_before_the_renames_loads_in_place(case):
    # A run started before the renames resumes: its keys, renamed, are today's keys in today's
    # order (the optimisers' states are matched to parameters by position), with their tensors.
    recorded = json.loads(OLD_KEYS.read_text())["agents"][case]
    rung, overrides = AGENTS[case]
    cfg = make_config("minigrid:unmodified", rung, "tiny", overrides)
    agent = Agent(cfg, ActSpace(True, 3), runtime=Runtime.of(cfg))
    now = agent.checkpoint_state()
    old = {key: torch.full(shape, i) for i, (key, shape) in enumerate(recorded["modules"])}
    assert list(renamed(old)) == list(now["modules"])
    assert {name: [len(g["params"]) for g in opt["param_groups"]]
            for name, opt in now["optimizers"].items()} == recorded["optimizers"]
    agent.load_checkpoint_state({"modules": old, "optimizers": now["optimizers"]})
    loaded = agent.state_dict()
    assert all((loaded[key] == i).all() for i, key in enumerate(renamed(old)))
