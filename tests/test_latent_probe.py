"""benchmarks/latent_probe.py: the agent's cell and direction it reads from the environment, and
its linear classifier, checked on real MiniGrid frames and on features with a known answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def probe():
    return _load("latent_probe")


def test_the_cell_it_names_is_where_the_frame_draws_the_agent(probe):
    tracking = _load("agent_tracking")
    data = probe.collect("minigrid:unmodified", None, 6, first_seed=0)
    assert data["image"].shape == (6, probe.LENGTH, 64, 64, 3)
    # The red agent's pixel position, read independently of the environment's coordinates.
    row, col = (tracking.locate(tracking.redness(data["image"].reshape(-1, 64, 64, 3)))
                // tracking.CELL).long().T
    assert torch.equal(4 * (row - 1) + (col - 1), torch.as_tensor(data["cell"]).flatten())
    assert len(np.unique(data["cell"])) > 4 and set(np.unique(data["dir"])) <= {0, 1, 2, 3}
    # What the agent faces: a wall exactly when it stands at the edge of the 4 x 4 interior and
    # faces out (direction 0 right, 1 down, 2 left, 3 up); obstacles and the goal elsewhere.
    cell, heading, front = (data[k].flatten() for k in ("cell", "dir", "front"))
    col, row = cell % 4, cell // 4
    outward = (((heading == 0) & (col == 3)) | ((heading == 1) & (row == 3))
               | ((heading == 2) & (col == 0)) | ((heading == 3) & (row == 0)))
    assert np.array_equal(front == probe.FRONT["wall"], outward)
    assert {probe.FRONT[None], probe.FRONT["ball"]} <= set(np.unique(front))
    # The replay's format: a reset's frame has no action; every other frame the one that led to it.
    first, action = data["is_first"], data["action"]
    assert first[:, 0].all() and (action[first] == 0).all()
    assert (action[~first].sum(-1) == 1).all()


def test_the_classifier_reads_what_features_hold_and_nothing_more(probe):
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(16, (2000,), generator=gen)
    noise = torch.randn(2000, 40, generator=gen)
    holding = torch.cat([torch.eye(16)[labels] + 0.15 * noise[:, :16], noise[:, 16:]], 1)
    train, test = slice(0, 1000), slice(1000, 2000)
    named = probe.fit_and_predict(holding[train], labels[train], holding[test], 16)
    assert probe.accuracy(named, labels[test]) > 0.95
    # Features independent of the labels: no better than guessing, on rows it was not fitted on.
    named = probe.fit_and_predict(noise[train], labels[train], noise[test], 16)
    assert probe.accuracy(named, labels[test]) < 0.15


def test_the_mlp_probe_reads_what_no_linear_read_finds(probe):
    # The label is the XOR of two features' signs: held, but invisible to any linear classifier.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 8, generator=gen)
    labels = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    train, test = slice(0, 2000), slice(2000, 4000)
    assert probe.accuracy(probe.fit_and_predict(x[train], labels[train], x[test], 2),
                          labels[test]) < 0.6
    assert probe.accuracy(probe.fit_and_predict_mlp(x[train], labels[train], x[test], 2),
                          labels[test]) > 0.9


def test_recall_finds_the_rare_class_a_high_accuracy_hides(probe):
    # 90 rows of class 0 and 10 of class 2, all named 0: accuracy 0.9, the rare class never seen.
    truth = torch.tensor([0] * 90 + [2] * 10)
    named = torch.zeros(100, dtype=torch.long)
    assert probe.accuracy(named, truth) == 0.9
    assert probe.recall(named, truth, {"a": 0, "b": 1, "c": 2}) == {"a": 1.0, "b": None,
                                                                    "c": 0.0}
    named[95:] = 2
    assert probe.recall(named, truth, {"a": 0, "c": 2})["c"] == 0.5
    # Naming the rare class often finds all of it, and is mostly wrong when it does.
    named[50:] = 2
    assert probe.recall(named, truth, {"c": 2})["c"] == 1.0
    assert probe.precision(named, truth, {"a": 0, "b": 1, "c": 2}) == {"a": 1.0, "b": None,
                                                                       "c": 0.2}
