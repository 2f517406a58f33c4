"""MiniGrid environments, backgrounds and env ids, on the real minigrid package (no mocks)."""

from __future__ import annotations

import dataclasses
import warnings
from collections import deque

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from blast_core import envs
from blast_core.config import ConfigError, make_config
from blast_core.envs.render import DIRECTION_COLORS, matte
from blast_core.envs.video import Background, procedural_video
from blast_core.errors import BlastError

LEFT, RIGHT, FORWARD = 0, 1, 2
# (dx, dy) of minigrid's directions 0 right, 1 down, 2 left, 3 up.
STEP = {0: (1, 0), 1: (0, 1), 2: (-1, 0), 3: (0, -1)}


def run_episode(env, policy):
    """Step until the episode ends; returns observations, rewards, flags and infos."""
    obs, info = env.reset()
    record = {"obs": [obs], "rewards": [], "terminated": [], "truncated": [], "infos": [info]}
    while not (record["truncated"] and record["truncated"][-1]):
        obs, reward, terminated, truncated, info = env.step(policy(env))
        for key, value in zip(record, (obs, reward, terminated, truncated, info), strict=True):
            record[key].append(value)
        assert len(record["rewards"]) <= 1000, "the episode never ended"
    return record


def planner(env) -> int:
    """The first action of a shortest path to the goal over (cell, direction), stepping forward
    only into cells free now: the env checks collisions before the balls move, so this never
    collides."""
    base = env.unwrapped.base
    start = (tuple(int(v) for v in base.agent_pos), int(base.agent_dir))
    first_action = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        (x, y), d = state
        cell = base.grid.get(x, y)
        if cell is not None and cell.type == "goal":
            return first_action[state]
        dx, dy = STEP[d]
        ahead = base.grid.get(x + dx, y + dy)
        moves = [(((x, y), (d - 1) % 4), LEFT), (((x, y), (d + 1) % 4), RIGHT)]
        if ahead is None or ahead.type == "goal":
            moves.append((((x + dx, y + dy), d), FORWARD))
        for nxt, action in moves:
            if nxt not in first_action:
                first_action[nxt] = action if state == start else first_action[state]
                queue.append(nxt)
    return LEFT  # boxed in by balls: turning never collides


def red_coverage(obs: np.ndarray) -> float:
    """The agent's area in pixels: red is only the agent, and anti-aliased edges count by the
    fraction of red they hold (on black or on the grey grid lines alike)."""
    o = obs.astype(int)
    red = o[..., 0] - np.maximum(o[..., 1], o[..., 2])
    return float(np.clip(red, 0, None).sum()) / 255.0


def background_mask(env_id_seed: int) -> np.ndarray:
    """Pixels that are black in the unmodified rendering of the same seed's first observation."""
    env = envs.make("minigrid:unmodified", env_id_seed)
    obs, _ = env.reset()
    return (obs == 0).all(-1)


def matching_frame(frames: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> int:
    hits = np.flatnonzero((frames[:, mask] == obs[mask]).all(axis=(1, 2)))
    assert len(hits) >= 1, "the background is not a frame of the video"
    return int(hits[0])


# --- observations, horizon and counts ------------------------------------------------------------


@pytest.mark.parametrize("env_id", envs.MINIGRID_IDS)
def test_minigrid_observations_are_64x64x3_uint8(env_id):
    env = envs.make(env_id, 0)
    assert env.action_space.n == 3
    obs, _ = env.reset()
    for _ in range(5):
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())
    env.close()


@pytest.mark.parametrize("env_id", envs.MINIGRID_IDS)
def test_gymnasiums_env_checker_passes(env_id):
    # Spaces, dtypes, and that reset(seed=...) makes the same observations twice.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*alternative render modes.*")
        check_env(envs.make(env_id, 0), skip_render_check=False)


def test_minigrid_episode_is_exactly_100_steps_and_never_terminates():
    env = envs.make("minigrid:random_frames", 1)
    for _ in range(2):  # a second episode after reset is 100 steps again
        record = run_episode(env, lambda e: e.action_space.sample())
        assert len(record["rewards"]) == 100
        assert not any(record["terminated"])
        assert record["truncated"] == [False] * 99 + [True]
    with pytest.raises(RuntimeError):
        env.step(FORWARD)


def test_colliding_episode_counts_collisions_and_keeps_going():
    # Always forward: the agent runs into a wall or a ball within 4 steps of every new layout.
    env = envs.make("minigrid:unmodified", 3)
    record = run_episode(env, lambda e: FORWARD)
    rewards, info = np.array(record["rewards"]), record["infos"][-1]
    assert len(rewards) == 100
    assert info["collisions"] == int((rewards == -1).sum()) >= 20
    assert info["goals"] == int((rewards > 0).sum())
    assert info["score"] == info["goals"] - info["collisions"]
    assert info["return"] == pytest.approx(rewards.sum())
    # Running counts: the count rises exactly at the step with the -1.
    collisions = [i["collisions"] for i in record["infos"][1:]]
    assert collisions == list(np.cumsum(rewards == -1))


def test_goal_reaching_episode_counts_goals_and_its_score():
    env = envs.make("minigrid:unmodified", 0)
    record = run_episode(env, planner)
    rewards, info = np.array(record["rewards"]), record["infos"][-1]
    assert info["collisions"] == 0
    assert info["goals"] == int((rewards > 0).sum()) >= 3
    assert info["score"] == info["goals"]
    # A goal pays 1 - 0.9 t / 144 for the t steps since its layout began, so the return is below
    # the score.
    assert info["return"] == pytest.approx(rewards.sum())
    assert 0 < info["return"] < info["score"]
    assert all(0.1 < r < 1 for r in rewards[rewards > 0])


# --- renderings ----------------------------------------------------------------------------------


def test_smaller_agent_covers_a_quarter_of_the_unmodified_agents_pixels():
    # Same seed and actions give the same layouts, so the agents stand on the same cells.
    ratios = []
    for seed in range(20):
        big = envs.make("minigrid:unmodified", seed)
        small = envs.make("minigrid:smaller_agent", seed)
        obs_big, _ = big.reset()
        obs_small, _ = small.reset()
        for _ in range(4):  # the four directions
            ratios.append(red_coverage(obs_small) / red_coverage(obs_big))
            obs_big, obs_small = big.step(RIGHT)[0], small.step(RIGHT)[0]
    # The nearest 48 -> 64 upscale duplicates every third row and column, so single frames vary
    # with the cell (measured 0.18-0.34); the average is the scaled triangle's quarter.
    assert 0.20 <= np.mean(ratios) <= 0.30
    assert 0.12 <= min(ratios) and max(ratios) <= 0.40


def test_color_direction_draws_four_colours_for_four_directions():
    env = envs.make("minigrid:color_direction", 5)
    obs, _ = env.reset()
    seen = {}
    for _ in range(4):
        direction = int(env.unwrapped.base.agent_dir)
        colours = {tuple(c) for c in obs.reshape(-1, 3)} & set(DIRECTION_COLORS.values())
        assert colours == {DIRECTION_COLORS[direction]}
        assert red_coverage(obs) == 0  # no red triangle: the shape shows no direction
        seen[direction] = colours.pop()
        obs = env.step(RIGHT)[0]
    assert sorted(seen) == [0, 1, 2, 3] and len(set(seen.values())) == 4


def test_random_frames_background_changes_at_every_step():
    frames = procedural_video(64)
    # A twin unmodified env of the same seed and actions shows the same layout: its black pixels
    # are where the background must show.
    env, twin = envs.make("minigrid:random_frames", 2), envs.make("minigrid:unmodified", 2)
    obs, plain = env.reset()[0], twin.reset()[0]
    shown = []
    for _ in range(30):
        assert (plain == 0).all(-1).sum() > 500
        shown.append(matching_frame(frames, obs, (plain == 0).all(-1)))
        obs, plain = env.step(LEFT)[0], twin.step(LEFT)[0]
    assert all(a != b for a, b in zip(shown, shown[1:], strict=False))
    assert len(set(shown)) > 20


def test_video_background_plays_consecutive_frames_from_a_random_start():
    frames = procedural_video(64)
    starts = []
    for seed in (4, 5):
        env, twin = envs.make("minigrid:video", seed), envs.make("minigrid:unmodified", seed)
        obs, plain = env.reset()[0], twin.reset()[0]
        shown = []
        for _ in range(30):
            shown.append(matching_frame(frames, obs, (plain == 0).all(-1)))
            obs, plain = env.step(FORWARD)[0], twin.step(FORWARD)[0]
        start = shown[0]
        expected = [start + t if start + t < len(frames) else None for t in range(30)]
        assert [s for s, e in zip(shown, expected, strict=True) if e is not None] == [
            e for e in expected if e is not None
        ]
        starts.append(start)
    assert starts[0] != starts[1]


def test_background_jumps_to_a_random_frame_at_the_end_of_the_clip():
    frames = procedural_video(64)[:5]
    bg = Background(frames, "sequential")
    bg.reset(np.random.default_rng(0))
    indices = [bg.index] + [(bg.step(), bg.index)[1] for _ in range(40)]
    for a, b in zip(indices, indices[1:], strict=False):
        assert b == a + 1 or a == len(frames) - 1


def test_matting_per_pixel_and_the_official_per_channel_quirk():
    img = np.array([[[0, 0, 0], [255, 0, 0], [100, 100, 100], [0, 255, 0]]], np.uint8)
    bg = np.full_like(img, 7)
    pixel = matte(img.copy(), bg, "pixel")
    assert pixel.tolist() == [[[7, 7, 7], [255, 0, 0], [100, 100, 100], [0, 255, 0]]]
    channel = matte(img.copy(), bg, "channel")
    assert channel.tolist() == [[[7, 7, 7], [255, 7, 7], [100, 100, 100], [7, 255, 7]]]


def test_channel_matting_env_option_tints_the_goal():
    cfg = dataclasses.replace(make_config("minigrid:video").env, matting="channel")
    env = envs.make("minigrid:video", 0, cfg)
    obs, _ = env.reset()
    frame = env.unwrapped.background.frames[env.unwrapped.background.index]
    plain, _ = envs.make("minigrid:unmodified", 0).reset()
    goal = (plain == (0, 255, 0)).all(-1)
    assert goal.sum() > 50
    assert (obs[goal][:, 1] == 255).all()
    assert (obs[goal][:, [0, 2]] == frame[goal][:, [0, 2]]).all()


# --- video sources -------------------------------------------------------------------------------


def test_procedural_video_is_deterministic_and_temporally_correlated():
    video = procedural_video(64)
    assert video.shape == (300, 64, 64, 3) and video.dtype == np.uint8
    again = procedural_video.__wrapped__(64)
    assert np.array_equal(video, again)
    v = video.astype(np.float32)
    step = np.abs(v[1:] - v[:-1]).mean(axis=(1, 2, 3))
    far = np.abs(v[150:] - v[:150]).mean(axis=(1, 2, 3))
    assert (step > 0).all(), "every frame moves"
    assert step.mean() < 0.6 * far.mean(), "neighbouring frames are alike"


def write_mp4(path, colours, shape=(32, 48)):
    import imageio.v3 as iio

    frames = np.stack([np.full((*shape, 3), c, np.uint8) for c in colours])
    iio.imwrite(path, frames, fps=10)
    return frames


def test_user_video_file_is_used_resized_and_cached(tmp_path):
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (220, 220, 60)] * 3
    write_mp4(tmp_path / "clip.mp4", colours)
    cfg = dataclasses.replace(make_config("minigrid:video").env, video=str(tmp_path / "clip.mp4"))
    env = envs.make("minigrid:video", 0, cfg, cache=tmp_path / "results" / ".cache")
    frames = env.unwrapped.background.frames
    assert frames.shape == (12, 64, 64, 3)
    # mp4 (yuv420) shifts solid colours by a few levels.
    assert np.abs(frames.mean(axis=(1, 2)) - np.array(colours)).max() < 12
    mask = background_mask(0)
    obs, _ = env.reset()
    assert np.array_equal(obs[mask], frames[env.unwrapped.background.index][mask])
    cached = list((tmp_path / "results" / ".cache" / "videos").glob("clip-64px-*.npy"))
    assert len(cached) == 1 and np.array_equal(np.load(cached[0]), frames)


def test_missing_or_unreadable_video_is_a_one_line_error_naming_the_path(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all")
    for path in (str(tmp_path / "missing.mp4"), str(garbage)):
        cfg = dataclasses.replace(make_config("minigrid:video").env, video=path)
        with pytest.raises(BlastError) as e:
            envs.make("minigrid:random_frames", 0, cfg)
        assert path in str(e.value) and "\n" not in str(e.value)


# --- seeds and ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", envs.MINIGRID_IDS)
def test_same_id_seed_and_actions_give_the_same_observations(env_id):
    actions = np.random.default_rng(0).integers(0, 3, 60)

    def rollout(seed):
        env = envs.make(env_id, seed)
        obs = [env.reset()[0]]
        obs += [env.step(a)[0] for a in actions]
        return np.stack(obs)

    assert np.array_equal(rollout(7), rollout(7))
    assert not np.array_equal(rollout(7), rollout(8))


def test_reset_with_a_seed_restarts_the_same_episode():
    env = envs.make("minigrid:video", 0)
    first = [env.reset(seed=11)[0]] + [env.step(FORWARD)[0] for _ in range(10)]
    again = [env.reset(seed=11)[0]] + [env.step(FORWARD)[0] for _ in range(10)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize("bad", ["minigrid:nope", "minigrid", "dmc:cheetah_rn", "atari:pong", ""])
def test_a_bad_env_id_is_a_one_line_error_listing_the_valid_ids(bad):
    with pytest.raises(ConfigError) as e:
        envs.make(bad, 0)
    message = str(e.value)
    assert "\n" not in message
    assert all(env_id in message for env_id in envs.ENV_IDS)


def test_env_ids_are_the_papers_in_order():
    assert envs.ENV_IDS[:5] == tuple(f"minigrid:{v}" for v in envs.VARIANTS)
    assert len(envs.ENV_IDS) == 11 and envs.ENV_IDS[5] == "dmc:cartpole_swingup"


def test_a_config_of_the_other_family_is_refused():
    with pytest.raises(ConfigError):
        envs.make("minigrid:unmodified", 0, make_config("dmc:walker_run").env)
