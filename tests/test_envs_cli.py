"""`blast envs list|show` and `blast bench --envs`, end to end as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v3 as iio

from blast_core import envs


def blast(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blast_cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_envs_list_prints_the_papers_ids_in_order():
    done = blast("envs", "list")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines()]
    assert listed == list(envs.ENV_IDS)


def test_envs_show_draws_figure_2(tmp_path):
    out = tmp_path / "figure2.png"
    done = blast("envs", "show", *envs.MINIGRID_IDS, "--frames", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    image = iio.imread(out)
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 200  # five columns, two rows
    assert list(tmp_path.iterdir()) == [out], "no temporary file left behind"


def test_envs_show_bad_id_is_one_line_listing_valid_ids_and_writes_nothing(tmp_path):
    out = tmp_path / "x.png"
    done = blast("envs", "show", "minigrid:unmodified", "minigrid:bogus", "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert all(env_id in done.stderr for env_id in envs.ENV_IDS)
    assert not out.exists()


def test_envs_show_missing_video_names_the_path(tmp_path):
    missing = str(tmp_path / "nope.mp4")
    out = tmp_path / "x.png"
    video = f"env.video={missing}"
    done = blast("envs", "show", "minigrid:video", "--set", video, "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and missing in done.stderr
    assert not out.exists()


def test_bench_envs_writes_steps_per_second(tmp_path):
    out = tmp_path / "bench.json"
    done = blast(
        "bench", "--envs", "--env", "minigrid:unmodified", "--env", "minigrid:video",
        "--steps", "200", "--json", str(out),
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["envs"]
    assert [r["env"] for r in rows] == ["minigrid:unmodified", "minigrid:video"]
    assert all(r["steps"] == 200 and r["steps_per_s"] > 0 for r in rows)
    assert "minigrid:video" in done.stdout


def test_bench_without_a_target_is_an_error():
    done = blast("bench")
    assert done.returncode == 2 and "--envs" in done.stderr
