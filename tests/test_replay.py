"""The on-disk replay: storage, DreamerV2's window sampler, seeding, and restore from an index."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from blast_core.config import ReplayConfig
from blast_core.errors import BlastError
from blast_core.run.replay import EpisodeBuffer, Replay, max_map_count, memmap_member, window_start


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


def test_memmap_member_reads_any_stored_member_and_declines_compressed_ones(tmp_path):
    arrays = {"a": np.arange(10, dtype=np.float32),
              "b": np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4),
              "c": np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3))}
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    for key, value in arrays.items():
        mapped = memmap_member(tmp_path / "plain.npz", key)
        assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
        assert mapped.dtype == value.dtype and np.array_equal(mapped, value)
        assert memmap_member(tmp_path / "packed.npz", key) is None
    assert max_map_count(tmp_path / "missing") == 65530
    (tmp_path / "limit").write_text("1000\n")
    assert max_map_count(tmp_path / "limit") == 1000


def test_mmap_replay_maps_frames_and_samples_what_the_in_memory_one_does(tmp_path):
    held = replay(tmp_path / "held", seed=3, capacity=45)
    mapped = replay(tmp_path / "mapped", seed=3, capacity=45, mmap=True)
    for i in range(6):
        for r in (held, mapped):
            r.add(make_episode(10 + i, marker=i), index=i)
    assert list(held.episodes) == list(mapped.episodes)
    assert held.steps == mapped.steps == 13 + 14 + 15
    assert mapped.maps == len(mapped.episodes) == 3  # the evicted episodes were unmapped
    for name, episode in mapped.episodes.items():
        assert isinstance(episode["image"], np.memmap)
        assert not isinstance(held.episodes[name]["image"], np.memmap)
        with zipfile.ZipFile(tmp_path / "mapped" / "replay" / name) as archive:
            assert archive.getinfo("image.npy").compress_type == zipfile.ZIP_STORED
        with zipfile.ZipFile(tmp_path / "held" / "replay" / name) as archive:
            assert archive.getinfo("image.npy").compress_type == zipfile.ZIP_DEFLATED
    for _ in range(3):
        a, b = held.sample(), mapped.sample()
        assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
        assert not isinstance(b["image"], np.memmap)  # a batch is a copy


def test_mmap_restore_maps_uncompressed_files_and_reads_older_compressed_ones(tmp_path):
    r = replay(tmp_path)
    r.add(make_episode(10, marker=0), index=0)  # written with mmap off: compressed
    r.cfg = ReplayConfig(capacity=10_000, minlen=5, mmap=True)
    r.add(make_episode(12, marker=1), index=1)
    state = r.state_dict()
    expected = [r.sample()["image"] for _ in range(2)]
    fresh = replay(tmp_path, seed=9, mmap=True)
    fresh.load_state_dict(state)
    kinds = [isinstance(e["image"], np.memmap) for e in fresh.episodes.values()]
    assert kinds == [False, True] and fresh.maps == 1
    assert all(np.array_equal(fresh.sample()["image"], e) for e in expected)


def test_mmap_holds_episodes_in_memory_past_half_the_kernels_map_limit(tmp_path):
    r = replay(tmp_path, mmap=True)
    r.max_maps = 2  # as if vm.max_map_count were 4
    r.add(make_episode(10, marker=0), index=0)
    with pytest.warns(UserWarning, match="2 episodes memory-mapped"):
        r.add(make_episode(10, marker=1), index=1)
    r.add(make_episode(10, marker=2), index=2)
    kinds = [isinstance(e["image"], np.memmap) for e in r.episodes.values()]
    assert kinds == [True, True, False] and r.maps == 2
    assert r.sample()["image"].shape == (4, 6, 64, 64, 3)
