"""The training loop on the real MiniGrid env, the real agent and a real SQLite store."""

from __future__ import annotations

import mmap
import zipfile

import numpy as np
import pytest
import torch

from blast_core import config as C
from blast_core import envs
from blast_core.agent import Agent
from blast_core.config import tree as T
from blast_core.run.checkpoint import Checkpoints
from blast_core.run.driver import Driver, act_space_of, episode_seed
from blast_core.run.loop import Interrupted, Mean, RunContext, StopFlag, due, train
from blast_core.run.speed import SPEED_METRICS, proc_status_mib
from blast_core.store import Store

ENV = "minigrid:unmodified"
LOSSES = ("model_loss", "kl", "image_loss", "reward_loss", "actor_loss", "critic_loss")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


def open_run(tmp_path, run_id: str, cfg: C.Config) -> Store:
    store = Store.open(f"sqlite:///{tmp_path / 'blast.db'}")
    store.upsert_run(run_id, experiment=run_id.split("/")[0], env=ENV, rung="ar_prior", seed=0,
                     preset="tiny", config=T.to_dict(cfg), run_dir=str(tmp_path / run_id))
    return store


class StopAt:
    """A progress display that raises the stop flag at one step, as a signal handler would."""

    def __init__(self, flag: StopFlag, step: int) -> None:
        self.flag, self.step = flag, step

    def update(self, step: int, score: float | None) -> None:
        if step == self.step:
            self.flag.signum = 15

    def close(self) -> None:
        pass


def rows(store: Store, run_id: str):
    frame = store.metrics_frame()
    frame = frame[(frame.run_id == run_id) & ~frame.name.isin(SPEED_METRICS)]
    return frame.sort_values(["step", "name"])[["step", "frames", "name", "value"]].reset_index(
        drop=True
    )


def test_cadence_and_seeds():
    assert [s for s in range(0, 11) if due(s, 5)] == [5, 10]
    assert not any(due(s, 0) for s in range(5))
    assert episode_seed(0, 0, 1) != episode_seed(0, 1, 1) != episode_seed(1, 0, 1)
    assert episode_seed(3, 0, 7) == episode_seed(3, 0, 7)
    mean = Mean()
    mean.add({"a": 1.0})
    mean.add({"a": 3.0, "b": 2.0})
    assert mean.pop() == {"a": 2.0, "b": 2.0} and mean.pop() == {}


def test_anonymous_memory_is_read_from_the_kernel(tmp_path):
    # A fresh private anonymous mapping (a shared one counts as RssShmem): the heap may already
    # hold freed pages that a NumPy array would reuse (`perf.keep_freed_memory`, which other
    # tests in this process call), so only new pages show.
    before = proc_status_mib("RssAnon")
    with mmap.mmap(-1, 256 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as held:
        held.write(b"\1" * len(held))  # written, so resident
        assert proc_status_mib("RssAnon") - before > 200
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nRssAnon:\t   2048 kB\n")
    assert proc_status_mib("RssAnon", status) == 2.0
    assert np.isnan(proc_status_mib("RssFile", status))
    assert np.isnan(proc_status_mib("RssAnon", tmp_path / "absent"))


def test_episode_in_progress_is_restored_by_re_stepping_its_actions():
    cfg = C.make_config(ENV, "dv2", "tiny").env
    a, b = envs.make(ENV, 0, cfg), envs.make(ENV, 0, cfg)
    space = act_space_of(a.action_space)
    first = Driver(a, space, seed=5, stream=0)
    first.reset()
    rng = np.random.default_rng(0)
    actions = [np.eye(3, dtype=np.float32)[rng.integers(3)] for _ in range(140)]
    for action in actions[:37]:
        first.step(action)
    state = first.state_dict()
    second = Driver(b, space, seed=5, stream=0)
    second.load_state_dict(state)
    assert len(second.episode) == 38
    for action in actions[37:]:
        done_a, done_b = first.step(action), second.step(action)
        assert np.array_equal(first.episode.entries[-1]["image"],
                              second.episode.entries[-1]["image"])
        assert (done_a is None) == (done_b is None)
        if done_a:
            assert done_a["score"] == done_b["score"] and done_a["index"] == done_b["index"] == 0
    a.close(), b.close()


def test_tiny_run_writes_tidy_rows_checkpoints_and_replay(tmp_path):
    cfg = C.make_config(ENV, "ar_prior", "tiny")
    store = open_run(tmp_path, "e/full", cfg)
    train(cfg, RunContext("e/full", tmp_path / "e/full", 0, store))
    frame = rows(store, "e/full")
    names = set(frame.name)
    assert {"eval_score", "eval_return", "train_score", "train_return", *LOSSES} <= names
    assert sorted(frame[frame.name == "eval_score"].step) == [200, 400]
    assert sorted(frame[frame.name == "train_score"].step) == [100, 200, 300, 400]
    assert sorted(frame[frame.name == "model_loss"].step) == [200, 250, 300, 350, 400]
    assert (frame.frames == frame.step * cfg.env.action_repeat).all()
    assert not frame.duplicated(["step", "name"]).any()
    assert [s for s, _ in Checkpoints(tmp_path / "e/full/checkpoints").paths()] == [300, 400]
    assert len(list((tmp_path / "e/full/replay").glob("*.npz"))) == 4
    run = store.run("e/full")
    assert run["step"] == 400


@pytest.mark.parametrize("mmap", [False, True])
def test_interrupt_and_resume_match_an_uninterrupted_run(tmp_path, mmap):
    """Stopping mid-interval (step 257) and resuming gives the same rows and the same weights;
    so does a replay mapped from its files (`replay.mmap`), through the same interruption."""
    cfg = C.make_config(ENV, "ar_prior", "tiny")
    resumed = C.make_config(ENV, "ar_prior", "tiny", {"replay.mmap": mmap})
    store = open_run(tmp_path, "e/a", cfg)
    open_run(tmp_path, "e/b", resumed)
    train(cfg, RunContext("e/a", tmp_path / "e/a", 0, store))
    flag = StopFlag()
    with pytest.raises(Interrupted):
        train(resumed, RunContext("e/b", tmp_path / "e/b", 0, store, stop=flag,
                                  progress=StopAt(flag, 257)))
    assert [s for s, _ in Checkpoints(tmp_path / "e/b/checkpoints").paths()] == [200, 257]
    train(resumed, RunContext("e/b", tmp_path / "e/b", 0, store, say=lambda m: None))
    assert rows(store, "e/a").equals(rows(store, "e/b"))
    a = Checkpoints(tmp_path / "e/a/checkpoints").latest()[1]["agent"]
    b = Checkpoints(tmp_path / "e/b/checkpoints").latest()[1]["agent"]
    assert all(torch.equal(a["modules"][k], b["modules"][k]) for k in a["modules"])
    files = sorted((tmp_path / "e/b/replay").glob("*.npz"))
    assert files
    for file in files:
        with zipfile.ZipFile(file) as archive:
            stored = archive.getinfo("image.npy").compress_type == zipfile.ZIP_STORED
        assert stored == mmap, file


def test_a_signal_during_the_pretrain_stops_it_and_the_resume_finishes_it(tmp_path, monkeypatch):
    """The stop flag is honoured between two of the pretrain's updates, not after all of them
    (a cpu-preset pretrain takes minutes; SLURM kills 30 s after its signal); the resumed run
    does the remaining updates before acting and ends as an uninterrupted run."""
    cfg = C.make_config(ENV, "ar_prior", "tiny", {"schedule.pretrain": 12})
    store = open_run(tmp_path, "e/a", cfg)
    open_run(tmp_path, "e/b", cfg)
    train(cfg, RunContext("e/a", tmp_path / "e/a", 0, store))
    flag, calls, real = StopFlag(), [], Agent.update

    def signalled_after_five(self, batch):
        calls.append(1)
        if len(calls) == 5:
            flag.signum = 15
        return real(self, batch)

    monkeypatch.setattr(Agent, "update", signalled_after_five)
    with pytest.raises(Interrupted):
        train(cfg, RunContext("e/b", tmp_path / "e/b", 0, store, stop=flag))
    assert len(calls) == 5
    step, state = Checkpoints(tmp_path / "e/b/checkpoints").latest()
    assert (step, state["updates"], state["pending"]) == (cfg.schedule.prefill, 5, 7)
    monkeypatch.undo()
    train(cfg, RunContext("e/b", tmp_path / "e/b", 0, store, say=lambda m: None))
    assert rows(store, "e/a").equals(rows(store, "e/b"))
    a = Checkpoints(tmp_path / "e/a/checkpoints").latest()[1]["agent"]
    b = Checkpoints(tmp_path / "e/b/checkpoints").latest()[1]["agent"]
    assert all(torch.equal(a["modules"][k], b["modules"][k]) for k in a["modules"])
