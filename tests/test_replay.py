"""The on-disk replay: storage, DreamerV2's window sampler, seeding, and restore from an index."""

from __future__ import annotations

import numpy as np
import pytest

from blast_core.config import ReplayConfig
from blast_core.errors import BlastError
from blast_core.replay import EpisodeBuffer, Replay, window_start


def make_episode(steps: int, marker: int = 0, actions: int = 3) -> dict[str, np.ndarray]:
    """A fake but well-formed episode whose images carry (marker, t) so windows can be traced."""
    buf = EpisodeBuffer()
    for t in range(steps + 1):
        image = np.zeros((64, 64, 3), np.uint8)
        image[0, 0, 0], image[0, 0, 1] = marker, t
        buf.add({
            "image": image,
            "action": np.eye(actions, dtype=np.float32)[t % actions] if t else np.zeros(actions),
            "reward": float(t),
            "is_first": t == 0,
            "is_last": t == steps,
            "is_terminal": False,
        })
    return buf.arrays()


def replay(tmp_path, seed=0, **cfg) -> Replay:
    params = {"capacity": 10_000, "minlen": 5, "prioritize_ends": True} | cfg
    return Replay(tmp_path / "replay", ReplayConfig(**params), batch=4, length=6, seed=seed)


def test_episode_is_stored_compressed_and_sampled_in_windows(tmp_path):
    r = replay(tmp_path)
    assert not r.ready
    name = r.add(make_episode(20, marker=7), index=0)
    assert (tmp_path / "replay" / name).exists() and name.endswith(".npz")
    with np.load(tmp_path / "replay" / name) as data:
        assert data["image"].shape == (21, 64, 64, 3) and data["image"].dtype == np.uint8
    assert r.ready and r.steps == 20
    batch = r.sample()
    assert set(batch) == {"image", "action", "reward", "is_first", "is_terminal"}
    assert batch["image"].shape == (4, 6, 64, 64, 3) and batch["image"].dtype == np.uint8
    assert batch["action"].shape == (4, 6, 3) and batch["action"].dtype == np.float32
    assert batch["reward"].shape == (4, 6) and batch["reward"].dtype == np.float32
    assert batch["is_first"].dtype == bool and batch["is_first"][:, 0].all()
    # Windows are contiguous: the time stamp in the image and the reward advance together.
    t = batch["image"][:, :, 0, 0, 1].astype(int)
    assert (np.diff(t, axis=1) == 1).all() and (batch["reward"] == t).all()


def test_short_episodes_are_not_stored(tmp_path):
    r = replay(tmp_path, minlen=10)
    assert r.add(make_episode(9), index=0) is None
    assert not list((tmp_path / "replay").iterdir())


def test_window_start_matches_dreamerv2_distribution():
    # 101 entries, windows of 50: 52 valid starts, plus 50 slots that collapse onto the last.
    rng = np.random.default_rng(0)
    starts = np.array([window_start(rng, 101, 50, True) for _ in range(20_000)])
    assert starts.min() == 0 and starts.max() == 51
    assert abs((starts == 51).mean() - 51 / 102) < 0.02
    uniform = np.array([window_start(rng, 101, 50, False) for _ in range(20_000)])
    assert abs((uniform == 51).mean() - 1 / 52) < 0.01


def test_sampler_is_seeded(tmp_path):
    a, b, c = replay(tmp_path / "a", seed=1), replay(tmp_path / "b", seed=1), replay(tmp_path / "c")
    for r in (a, b, c):
        for i in range(3):
            r.add(make_episode(12 + i, marker=i), index=i)
    same = [np.array_equal(a.sample()["image"], b.sample()["image"]) for _ in range(3)]
    assert all(same)
    assert not np.array_equal(a.sample()["image"], c.sample()["image"])


def test_restore_drops_episodes_newer_than_the_index_and_continues_the_sampler(tmp_path):
    r = replay(tmp_path)
    for i in range(3):
        r.add(make_episode(10, marker=i), index=i)
    state = r.state_dict()
    expected = [r.sample()["image"] for _ in range(2)]
    r.add(make_episode(10, marker=9), index=3)  # written after the "checkpoint"
    (tmp_path / "replay" / "ep-0000004-10.npz.tmp").write_bytes(b"half")
    fresh = replay(tmp_path, seed=123)
    fresh.load_state_dict(state)
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == sorted(state["episodes"])
    assert fresh.steps == 30
    assert all(np.array_equal(fresh.sample()["image"], e) for e in expected)


def test_restore_reports_a_missing_episode_file(tmp_path):
    r = replay(tmp_path)
    name = r.add(make_episode(10), index=0)
    state = r.state_dict()
    (tmp_path / "replay" / name).unlink()
    with pytest.raises(BlastError, match="missing"):
        replay(tmp_path).load_state_dict(state)


def test_capacity_evicts_oldest_and_files_go_once_no_checkpoint_names_them(tmp_path):
    r = replay(tmp_path, capacity=25)
    names = [r.add(make_episode(10, marker=i), index=i) for i in range(3)]
    assert list(r.episodes) == names[1:] and r.steps == 20
    path = tmp_path / "replay" / names[0]
    r.on_checkpoint()  # the previous checkpoint may still name it
    assert path.exists()
    r.on_checkpoint()  # now neither kept checkpoint does
    assert not path.exists()


def test_sample_before_any_long_episode_is_an_error(tmp_path):
    r = Replay(tmp_path, ReplayConfig(minlen=1), batch=2, length=50, seed=0)
    r.add(make_episode(10), index=0)
    with pytest.raises(BlastError, match="no episode"):
        r.sample()
