"""`blast report --stats`: rliable's IQM, stratified-bootstrap CIs and probability of improvement.

Runs the real rliable 1.2 (with arch < 8 under pandas < 3, which the issue says breaks under
pandas 3) on final scores made in the test, and checks the numbers against scipy directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from blast_core.report import frames, stats
from tests.report_rows import VARIANTS, ladder_rows

REPS = 200  # enough to exercise the bootstrap; the CLI's default is 2000


def final_of(rows: pd.DataFrame) -> pd.DataFrame:
    return frames.final_scores(rows, "eval_score", 3)


def matrix(final: pd.DataFrame, rung: str) -> np.ndarray:
    """(seeds x tasks) in the paper's task order, by hand."""
    cols = [final[(final["rung"] == rung) & (final["env"] == e)].sort_values("seed")["score"]
            for e in VARIANTS]
    return np.stack([c.to_numpy() for c in cols], axis=1)


def test_iqm_and_probability_of_improvement_match_scipy():
    final = final_of(ladder_rows(seeds=5))
    table = stats.ladder_stats(final, reps=REPS)
    iqm = table[table["kind"] == "iqm"].set_index("rung")
    assert list(iqm.index) == ["dv2", "no_recon", "stop_grad", "target", "bn", "ar_prior"]
    for rung, row in iqm.iterrows():
        assert row["estimate"] == pytest.approx(scipy.stats.trim_mean(matrix(final, rung), 0.25,
                                                                      axis=None))
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
        assert row["seeds"] == 5 and row["tasks"] == "5/5" and row["warning"] == ""
    poi = table[table["kind"] == "poi"]
    assert list(poi["label"]) == ["P(−recon > DV2)", "P(+SG > −recon)", "P(+EMA > +SG)",
                                  "P(+BN > +EMA)", "P(+AR > +BN)"]
    for _, row in poi.iterrows():
        x, y = matrix(final, row["rung"]), matrix(final, row["versus"])
        # Mann-Whitney per task, by hand: P(X > Y) + P(X = Y) / 2, averaged over tasks.
        by_task = [np.mean([(a > b) + 0.5 * (a == b) for a in x[:, t] for b in y[:, t]])
                   for t in range(x.shape[1])]
        assert row["estimate"] == pytest.approx(np.mean(by_task))
        assert 0 <= row["ci_low"] <= row["estimate"] <= row["ci_high"] <= 1


def test_probability_of_improvement_is_rliables():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for n, m in ((5, 5), (3, 7), (10, 4)):
        x = rng.integers(0, 4, (n, 6)).astype(float)  # few values: many ties
        y = rng.integers(0, 4, (m, 6)).astype(float)
        assert stats.probability_of_improvement(x, y) == pytest.approx(
            metrics.probability_of_improvement(x, y), abs=1e-12)
    same = rng.normal(size=(5, 3))
    assert stats.probability_of_improvement(same, same) == 0.5
    assert stats.probability_of_improvement(same + 100, same) == 1.0
    with_nan = same.copy()
    with_nan[0, 0] = np.nan
    assert np.isnan(stats.probability_of_improvement(with_nan, same))


def test_bootstrap_is_reproducible_and_leaves_numpy_rng_alone():
    final = final_of(ladder_rows(envs=VARIANTS[:2], rungs=["dv2", "no_recon"], seeds=3))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = stats.ladder_stats(final, reps=REPS)
    assert (np.random.get_state()[1] == before).all()
    b = stats.ladder_stats(final, reps=REPS)
    pd.testing.assert_frame_equal(a, b)


def test_fewer_than_five_seeds_ragged_seeds_and_missing_tasks_are_flagged():
    rows = ladder_rows(seeds=3, skip=(("minigrid:video", "target"), ("minigrid:unmodified", "bn",
                                                                      3)))
    table = stats.ladder_stats(final_of(rows), reps=REPS).set_index("label")
    assert "only 3 seed(s) per task (< 5)" in table.loc["DV2", "warning"]
    assert table.loc["+EMA", "tasks"] == "4/5" and "4 of 5 tasks" in table.loc["+EMA", "warning"]
    # +BN: unmodified has 2 seeds, so the other tasks keep their 2 lowest (4 runs dropped).
    assert table.loc["+BN", "seeds"] == 2
    assert "4 run(s) dropped" in table.loc["+BN", "warning"]
    assert table.loc["P(+EMA > +SG)", "tasks"] == "4/5"
    assert (table["warning"] != "").all()


def test_families_and_latent_only():
    mg = ladder_rows(envs=VARIANTS[:2], rungs=["ar_prior", "latent_only"], seeds=2)
    dmc = ladder_rows(envs=["dmc:cartpole_swingup", "dmc:walker_run"], rungs=["dv2", "no_recon"],
                      seeds=2, seed=1)
    table = stats.ladder_stats(final_of(pd.concat([mg, dmc])), reps=REPS)
    assert list(table["family"].unique()) == ["minigrid", "dmc"]
    assert list(table["label"]) == ["+AR", "latent only", "P(latent only > +AR)",
                                    "DV2", "−recon", "P(−recon > DV2)"]


def test_stats_figure_has_two_panels_per_family_in_ladder_order():
    final = final_of(ladder_rows(envs=VARIANTS[:2], seeds=2))
    table = stats.ladder_stats(final, reps=REPS)
    fig = stats.stats_figure(table, "rule", frames.YLABELS)
    assert len(fig.axes) == 2
    iqm_ax, poi_ax = fig.axes
    assert [t.get_text() for t in iqm_ax.get_yticklabels()] == [
        "DV2", "−recon", "+SG", "+EMA", "+BN", "+AR"]
    assert iqm_ax.get_xlabel() == "score (goals − collisions)"
    assert poi_ax.get_xlim() == (-0.04, 1.04)
    assert len(poi_ax.get_yticklabels()) == 5
    # Every number here rests on 2 seeds, so every row carries the warning mark.
    assert sum(t.get_text() == " !" for ax in fig.axes for t in ax.texts) == 6 + 5


def test_per_env_rows_and_pairs_versus_a_baseline():
    """`--per-env --versus dv2`: after the family's rows, each env alone (one task, its seeds),
    and P(rung > dv2) for every rung beside the adjacent pairs."""
    final = final_of(ladder_rows(seeds=5))
    final = final[final["rung"].isin(["dv2", "bn", "ar_prior"])]
    table = stats.ladder_stats(final, reps=REPS, per_env=True, versus="dv2")
    assert list(dict.fromkeys(table["family"])) == ["minigrid", *VARIANTS]
    fam = table[(table["family"] == "minigrid") & (table["kind"] == "poi")]
    assert [tuple(p) for p in fam[["rung", "versus"]].to_numpy()] == [
        ("bn", "dv2"), ("ar_prior", "bn"), ("ar_prior", "dv2")]
    for t, env in enumerate(VARIANTS):
        part = table[table["family"] == env].set_index(["kind", "rung", "versus"])
        assert set(part["tasks"]) == {"1/1"}
        iqm = part.loc[("iqm", "ar_prior", "")]
        assert iqm["estimate"] == pytest.approx(
            scipy.stats.trim_mean(matrix(final, "ar_prior")[:, t], 0.25))
        x, y = matrix(final, "ar_prior")[:, t], matrix(final, "dv2")[:, t]
        by_hand = np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y])
        assert part.loc[("poi", "ar_prior", "dv2")]["estimate"] == pytest.approx(by_hand)
