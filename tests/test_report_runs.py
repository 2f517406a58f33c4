"""`blast report` on what real runs leave behind: metric rows, checkpoints (Figure 8), and on the
real environments (Figure 2). Two tiny runs (`blast run --preset tiny`) are made once per module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blast_core.config import make_config
from blast_core.envs import MINIGRID_IDS, make
from blast_core.errors import BlastError
from blast_core.report import build, frames, gather
from blast_core.store import Store, db_url

ENV = "minigrid:unmodified"
pytestmark = pytest.mark.xdist_group("report_runs")  # one worker makes `tiny_runs`, once


def blast(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blast_cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> Path:
    """A results folder holding a −recon and a BLAST (ar_prior) tiny run, both done."""
    root = tmp_path_factory.mktemp("results")
    for rung in ("no_recon", "ar_prior"):
        proc = blast("run", "--env", ENV, "--rung", rung, "--seed", "1", "--preset", "tiny",
                     "--results", str(root), "--threads", "1", "--no-progress")
        assert proc.returncode == 0, proc.stderr
    return root


def test_figure3_and_stats_from_real_runs(tiny_runs):
    proc = blast("report", "--figure", "3", "--results", str(tiny_runs), "--last", "1")
    assert proc.returncode == 0, proc.stderr
    csv = pd.read_csv(tiny_runs / "reports" / "default" / "figure3.csv")
    with Store.open(db_url(results=tiny_runs)) as store:
        rows = store.metrics_frame("default", ["eval_score"])
        stats = build.build(None, store, build.ReportOptions(reps=50)).table
    last = rows.sort_values("step").groupby("rung")["value"].last()  # one seed: mean = the value
    drawn = csv[csv["n"] > 0].set_index("rung")
    assert sorted(drawn.index) == ["ar_prior", "no_recon"]
    for rung in drawn.index:
        assert drawn.loc[rung, "mean"] == pytest.approx(last[rung])
        assert np.isnan(drawn.loc[rung, "std"])  # one seed has no spread, and none is drawn
    assert (csv[csv["n"] == 0]["shown"] == "missing").all() and (csv["n"] == 0).sum() == 4
    assert list(stats["label"]) == ["−recon", "+AR", "P(+AR > −recon)"]
    assert stats["warning"].str.contains("only 1 seed").all()


def test_figure8_reconstructs_the_imagined_frame_from_checkpoints(tiny_runs):
    with Store.open(db_url(results=tiny_runs)) as store:
        # A BLAST run registered for the video variant but without a checkpoint yet.
        store.upsert_run("default/minigrid.video__ar_prior__tiny__s1", experiment="default",
                         env="minigrid:video", rung="ar_prior", seed=1, preset="tiny",
                         config=None, run_dir=str(tiny_runs / "nowhere"))
        report = build.build(8, store, build.ReportOptions())
    table = report.table.set_index(["env", "panel"])
    assert list(report.table["env"].unique()) == [ENV, "minigrid:video"]
    assert table.loc[(ENV, "no_recon"), "run_id"].endswith("__no_recon__tiny__s1@400")
    assert table.loc[(ENV, "ar_prior"), "run_id"].endswith("__ar_prior__tiny__s1@400")
    assert not report.table[report.table["env"] == "minigrid:video"]["shown"].any()
    assert "missing: video/truth, video/no_recon, video/ar_prior" in report.notes
    # The axes show the real true frame: frame CONTEXT + HORIZON of the probe sequence.
    seq = gather.probe_sequence(ENV, make_config(ENV, preset="tiny").env)
    axes = report.figure.axes
    truth = axes[0].get_images()[0].get_array()
    assert np.array_equal(np.asarray(truth), seq["image"][0, -1])
    recons = [np.asarray(ax.get_images()[0].get_array()) for ax in axes[1:3]]
    assert all(r.shape == (64, 64, 3) and r.dtype == np.uint8 for r in recons)
    assert not np.array_equal(*recons)  # two different world models
    err = table.loc[(ENV, "ar_prior"), "mse_vs_truth"]
    assert err == pytest.approx(np.mean((recons[1].astype(float) - truth.astype(float)) ** 2))
    assert [len(ax.get_images()) for ax in axes[3:]] == [0, 0, 0]  # video: n/a panels


def test_figure8_draws_the_rungs_asked_for_in_their_order(tiny_runs):
    with Store.open(db_url(results=tiny_runs)) as store:
        default = build.build(8, store, build.ReportOptions())
        one = build.build(8, store, build.ReportOptions(rungs=("ar_prior",)))
        swapped = build.build(8, store, build.ReportOptions(rungs=("ar_prior", "no_recon")))
        with pytest.raises(BlastError, match="no runs of rung dv2"):
            build.build(8, store, build.ReportOptions(rungs=("dv2",)))
    # The first row is the unmodified grid's (another test may add a video run without data).
    panels = [list(r.table[r.table["env"] == ENV]["panel"]) for r in (one, swapped)]
    assert panels == [["truth", "ar_prior"], ["truth", "ar_prior", "no_recon"]]
    images = [[np.asarray(ax.get_images()[0].get_array()) for ax in r.figure.axes[:n]]
              for r, n in ((default, 3), (swapped, 3))]
    # The same checkpoints and sequence: the same pictures, in the order asked for.
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        assert np.array_equal(images[0][i], images[1][j])
    assert [ax.get_title() for ax in swapped.figure.axes[:3]] == [
        "true frame", "BLAST (+AR)", "−recon"]


def test_figure8_skips_a_run_whose_config_this_blast_cannot_read(tiny_runs, tmp_path):
    with Store.open(db_url(results=tiny_runs)) as store:
        (real,) = [r for r in store.runs("default") if r["rung"] == "no_recon"]
    # As a newer blast would write it: a key this one does not know.
    config = real["config"] | {"rssm": real["config"]["rssm"] | {"ar_future": 1}}
    with Store.open(f"sqlite:///{tmp_path / 'newer.db'}") as newer:
        newer.upsert_run(real["id"], experiment="default", env=ENV, rung="no_recon", seed=1,
                         preset="tiny", config=config, run_dir=real["run_dir"])
        report = build.build(8, newer, build.ReportOptions())
    skipped = [n for n in report.notes if n.startswith("warning: skipped")]
    assert len(skipped) == 1 and real["id"] in skipped[0] and "ar_future" in skipped[0]
    assert not report.table.set_index("panel").loc["no_recon", "shown"]


def test_figure2_shows_the_real_observations():
    report = build.build(2, None, build.ReportOptions())
    assert [ax.get_title() for ax in report.figure.axes[:5]] == [
        "unmodified", "color_direction", "smaller_agent", "random_frames", "video"]
    assert len(report.table) == 15 and list(report.table["step"][:3]) == [0, 3, 6]
    for env_id, ax in zip(MINIGRID_IDS, report.figure.axes[:5], strict=True):
        env = make(env_id, 0)
        obs, _ = env.reset()
        env.close()
        assert np.array_equal(np.asarray(ax.get_images()[0].get_array()), obs)
    # Same layout and moves: outside the agent, unmodified and smaller_agent draw the same grid.
    unmod, small = (report.figure.axes[i].get_images()[0].get_array() for i in (0, 2))
    assert 0 < np.mean(np.any(np.asarray(unmod) != np.asarray(small), axis=-1)) < 0.02
    assert frames.order_envs(list(reversed(MINIGRID_IDS))) == list(MINIGRID_IDS)
