"""Pixel DeepMind Control and the headless GL choice, on real dm_control rendering (kept few:
a software-rendered frame costs ~15-30 ms here)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from blast_core import envs
from blast_core.envs.gl import ensure_gl
from blast_core.errors import BlastError


def test_dmc_spaces_and_observations():
    env = envs.make("dmc:cheetah_run", 0)
    assert env.action_space.shape == (6,) and env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    obs, _ = env.reset()
    for _ in range(3):
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs.flags.c_contiguous
        assert env.observation_space.contains(obs)
        assert obs.std() > 5, "a rendered scene, not a blank frame"
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert isinstance(reward, float) and not terminated and not truncated
    env.close()


def test_gymnasiums_env_checker_passes():
    env = envs.make("dmc:pendulum_swingup", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*alternative render modes.*")
        check_env(env, skip_render_check=False)
    env.close()


def test_action_repeat_sums_the_suite_envs_rewards_over_two_frames():
    env = envs.make("dmc:cartpole_swingup", 3)
    obs, _ = env.reset()
    from dm_control import suite  # imported after make chose the GL backend

    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 3})
    raw.reset()
    assert np.array_equal(obs, raw.physics.render(64, 64, camera_id=0))
    for action in np.random.default_rng(0).uniform(-1, 1, (10, 1)):
        obs, reward, *_ = env.step(action.astype(np.float32))
        expected = raw.step(action).reward + raw.step(action).reward
        assert reward == pytest.approx(expected)
    assert np.array_equal(obs, raw.physics.render(64, 64, camera_id=0))
    assert env.unwrapped._env.physics.data.time == pytest.approx(20 * raw.control_timestep())
    raw.physics.free()
    env.close()


def test_dmc_episode_is_500_agent_steps_of_1000_frames_then_truncated():
    env = envs.make("dmc:pendulum_swingup", 0)
    env.reset()
    flags = []
    while not (flags and flags[-1][1]):
        _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        flags.append((terminated, truncated))
    assert len(flags) == 500 and not any(t for t, _ in flags)
    frames = env.unwrapped._env.physics.data.time / env.unwrapped._env.control_timestep()
    assert round(frames) == 1000
    with pytest.raises(RuntimeError):
        env.step(np.zeros(1, np.float32))
    env.close()


def test_same_dmc_seed_and_actions_give_the_same_observations():
    actions = np.random.default_rng(1).uniform(-1, 1, (5, 6)).astype(np.float32)

    def rollout(seed):
        env = envs.make("dmc:walker_run", seed)
        obs = [env.reset()[0]] + [env.step(a)[0] for a in actions]
        again = env.reset(seed=seed)[0]
        env.close()
        return np.stack(obs), again

    a, a_again = rollout(1)
    b, _ = rollout(1)
    c, _ = rollout(2)
    assert np.array_equal(a, b) and np.array_equal(a[0], a_again)
    assert not np.array_equal(a[0], c[0])


def test_cup_is_ball_in_cup_and_any_suite_task_is_an_id():
    assert envs.check_env_id("dmc:cup_catch") == ("dmc", "cup_catch")
    assert "dmc:acrobot_swingup" in envs.dmc_ids()
    env = envs.make("dmc:cup_catch", 0)
    assert (env.unwrapped.domain, env.unwrapped.task) == ("ball_in_cup", "catch")
    env.close()


def python(code: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**env, **env_vars}, capture_output=True, text=True
    )


def test_gl_backend_falls_back_to_osmesa_when_egl_cannot_start():
    # An EGL device index that does not exist makes EGL fail for real.
    code = (
        "from blast_core import envs; e = envs.make('dmc:pendulum_swingup', 0);"
        "print(e.reset()[0].shape); import os; print(os.environ['MUJOCO_GL']); e.close()"
    )
    done = python(code, MUJOCO_EGL_DEVICE_ID="99")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(64,", "64,", "3)", "osmesa"]


def test_gl_respects_the_users_setting():
    code = "from blast_core.envs.gl import ensure_gl; print(ensure_gl())"
    done = python(code, MUJOCO_GL="osmesa")
    assert done.stdout.strip() == "osmesa"


def test_gl_error_names_the_packages_to_install(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(BlastError) as e:
        ensure_gl(backends=("no_such_backend",))  # dm_control itself rejects it in the probe
    message = str(e.value)
    assert "\n" not in message and "libosmesa6" in message and "libegl1" in message
    assert "MUJOCO_GL" not in os.environ
