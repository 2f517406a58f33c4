"""`blast report`: the final-score and binning rules, the figures, and the command end to end.

Most tests build metric rows in the test (tests/report_rows.py); the end-to-end ones write them
through the real Store (SQLite and PostgreSQL) or produce them with real tiny runs.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from ladder_helpers import blast_here
from matplotlib.patches import Rectangle

from blast_core.config import LADDER_IDS
from blast_core.errors import BlastError
from blast_core.report import build, figures, frames
from blast_core.store import Store, db_url
from tests.report_rows import VARIANTS, ladder_rows, run_id, write_rows

PAPER_LABELS = ["DV2", "−recon", "+SG", "+EMA", "+BN", "+AR"]


def reference_final(rows: pd.DataFrame, last: int) -> dict[tuple[str, str], list[float]]:
    """The final-score rule by hand: per run, mean of the last `last` values by step."""
    per_cell: dict[tuple[str, str], list[float]] = {}
    for _, g in rows[rows["name"] == "eval_score"].groupby("run_id"):
        values = list(g.sort_values("step")["value"])[-last:]
        key = (g["env"].iloc[0], g["rung"].iloc[0])
        per_cell.setdefault(key, []).append(sum(values) / len(values))
    return per_cell


def bars(fig) -> list[Rectangle]:
    (ax,) = fig.axes
    return [p for c in ax.containers if hasattr(c, "patches") for p in c.patches]


def summary_of(rows: pd.DataFrame, last: int = 3, envs=VARIANTS, rungs=LADDER_IDS):
    final = frames.final_scores(rows, "eval_score", last)
    return frames.summarize_final(final, frames.cells(list(envs), rungs))


# --- the final-score rule -----------------------------------------------------------------------


@pytest.mark.parametrize("last", [1, 3, 100])
def test_bar_numbers_equal_group_means_and_stds(last):
    rows = ladder_rows(seeds=4)
    fig, drawn = figures.bar_figure(summary_of(rows, last), title="t", ylabel="y", caption="c")
    ref = reference_final(rows, last)
    assert len(drawn) == len(VARIANTS) * len(LADDER_IDS)
    for _, row in drawn.iterrows():
        values = pd.Series(ref[(row["env"], row["rung"])])
        assert row["n"] == 4
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["std"] == pytest.approx(values.std(), rel=1e-12)  # pandas' ddof=1
    # What is drawn is what the CSV says: every bar's height is the row's mean at the row's x.
    drawn_bars = {(round(p.get_x() + p.get_width() / 2, 9), round(p.get_height(), 9))
                  for p in bars(fig)}
    in_csv = zip(drawn["x"], drawn["mean"], strict=True)
    assert drawn_bars == {(round(x, 9), round(m, 9)) for x, m in in_csv}


def test_final_score_uses_the_last_evaluations_by_step_not_by_row_order():
    rows = ladder_rows(envs=VARIANTS[:1], rungs=["dv2"], seeds=1, evals=5)
    rows = rows[rows["name"] == "eval_score"].sample(frac=1, random_state=1)  # shuffled
    final = frames.final_scores(rows, "eval_score", 2)
    expect = rows.sort_values("step")["value"].iloc[-2:].mean()
    assert final["score"].iloc[0] == pytest.approx(expect)
    assert final["evals"].iloc[0] == 2
    assert final["frames"].iloc[0] == rows["frames"].max()


def test_bad_rules_are_one_line_errors():
    rows = ladder_rows(envs=VARIANTS[:1], seeds=1)
    with pytest.raises(BlastError, match="--last"):
        frames.final_scores(rows, "eval_score", 0)
    with pytest.raises(BlastError, match="--bin"):
        frames.bin_curves(rows, "eval_score", 0)
    with pytest.raises(BlastError, match="lacks column"):
        frames.final_scores(rows.drop(columns=["frames"]), "eval_score", 1)


# --- Figures 3, 4, 5: bars ----------------------------------------------------------------------


def test_ladder_bars_axes_labels_count_and_legend_order():
    rows = ladder_rows(seeds=3)
    fig, drawn = figures.bar_figure(summary_of(rows), title="Figure 3: MiniGrid",
                                    ylabel="score (goals − collisions)", caption="rule")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [v.split(":")[1] for v in VARIANTS]
    assert ax.get_ylabel() == "score (goals − collisions)"
    assert fig.get_suptitle() == "Figure 3: MiniGrid"
    assert len(bars(fig)) == 5 * 6
    assert [t.get_text() for t in ax.get_legend().get_texts()] == PAPER_LABELS
    assert [c.get_label() for c in ax.containers if hasattr(c, "patches")] == PAPER_LABELS
    # Bars of one group are in ladder order from left to right.
    first = drawn[drawn["env"] == VARIANTS[0]].sort_values("x")
    assert list(first["label"]) == PAPER_LABELS
    assert set(drawn["shown"]) == {"bar"}
    assert any("rule" in t.get_text() for t in fig.texts)


def test_missing_runs_are_drawn_as_missing_never_as_zero():
    gone = ("minigrid:video", "target")
    rows = ladder_rows(seeds=3, skip=(gone, ("minigrid:smaller_agent", "bn", 3)))
    fig, drawn = figures.bar_figure(summary_of(rows), title="t", ylabel="y", caption="c")
    (ax,) = fig.axes
    cell = drawn[(drawn["env"] == gone[0]) & (drawn["rung"] == gone[1])].iloc[0]
    assert cell["n"] == 0 and math.isnan(cell["mean"]) and cell["shown"] == "missing"
    assert len(bars(fig)) == 5 * 6 - 1
    assert all(abs(p.get_x() + p.get_width() / 2 - cell["x"]) > 1e-9 for p in bars(fig))
    marks = [t for t in ax.texts if t.get_text() == "n/a"]
    assert len(marks) == 1 and marks[0].get_position()[0] == pytest.approx(cell["x"])
    # A cell with fewer seeds than the others says so.
    short = drawn[(drawn["env"] == "minigrid:smaller_agent") & (drawn["rung"] == "bn")].iloc[0]
    assert short["n"] == 2 and short["seeds"] == "1 2"
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("n=")] == ["n=2"]


def test_latent_only_bars_rename_the_rungs():
    rows = ladder_rows(rungs=["ar_prior", "latent_only"], seeds=2)
    summary = summary_of(rows, rungs=["ar_prior", "latent_only"])
    labels = {"ar_prior": "BLAST (+AR)", "latent_only": "latent only"}
    fig, drawn = figures.bar_figure(summary, title="5", ylabel="y", caption="c", labels=labels)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["BLAST (+AR)", "latent only"]
    assert len(bars(fig)) == 10 and list(drawn["label"][:2]) == ["BLAST (+AR)", "latent only"]


# --- Figures 6, 7: curves -----------------------------------------------------------------------


def test_binning_equals_a_naive_loop():
    rows = ladder_rows(envs=VARIANTS[:2], rungs=["dv2", "ar_prior"], seeds=3)
    width = 700.0
    curves = frames.bin_curves(rows, "eval_score", width)
    score = rows[rows["name"] == "eval_score"]
    for _, c in curves.iterrows():
        per_run = []
        for _, g in score[(score["env"] == c["env"]) & (score["rung"] == c["rung"])].groupby(
                "run_id"):
            inside = [v for f, v in zip(g["frames"], g["value"], strict=True)
                      if c["frames"] - width < f <= c["frames"]]
            if inside:
                per_run.append(sum(inside) / len(inside))
        assert c["n"] == len(per_run) > 0
        assert c["mean"] == pytest.approx(np.mean(per_run))
        if len(per_run) > 1:
            assert c["std"] == pytest.approx(np.std(per_run, ddof=1))
    assert set(curves["frames"] % width) == {0}


def test_auto_bin_width_fits_the_sparsest_run():
    rows = ladder_rows(envs=VARIANTS[:1], rungs=["dv2"], seeds=3)
    gaps = [g.sort_values("frames")["frames"].diff().median()
            for _, g in rows[rows["name"] == "eval_score"].groupby("run_id")]
    assert frames.auto_bin_width(rows, "eval_score") == max(gaps)


def test_curve_figure_panels_lines_bands_and_legend():
    rows = ladder_rows(seeds=2, skip=(("minigrid:video", "target"),))
    curves = frames.bin_curves(rows, "eval_score", 600)
    fig, drawn = figures.curve_figure(curves, VARIANTS, LADDER_IDS, title="Figure 6",
                                      ylabel="score", caption="bins")
    panels = [ax for ax in fig.axes if ax.get_title()]
    titles = [v.split(":")[1] for v in VARIANTS]
    titles[-1] += "\n(no data: +EMA)"
    assert [ax.get_title() for ax in panels] == titles
    assert [len(ax.get_lines()) for ax in panels] == [6, 6, 6, 6, 5]
    assert [ax.get_xlabel() for ax in panels] == ["", "", "env frames", "env frames",
                                                  "env frames"]
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert [t.get_text() for t in legend.get_texts()] == PAPER_LABELS
    # The lines are the CSV: x = bin ends, y = means.
    line = panels[0].get_lines()[0]
    first = drawn[(drawn["env"] == VARIANTS[0]) & (drawn["rung"] == "dv2")]
    assert list(line.get_xdata()) == list(first["frames"])
    assert list(line.get_ydata()) == pytest.approx(list(first["mean"]))
    assert len(drawn) == len(curves)


# --- blast report end to end on the real store ----------------------------------------------------


def blast(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """The real `blast` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "blast_cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder whose SQLite database holds a 5-variant ladder, 3 seeds, one cell short:
    video/+EMA is registered (queued) but has no evaluation yet."""
    rows = ladder_rows(seeds=3, skip=(("minigrid:video", "target"),))
    with Store.open(db_url(results=tmp_path)) as store:
        write_rows(store, rows)
        store.upsert_run(run_id("minigrid:video", "target", 1), experiment="default",
                         env="minigrid:video", rung="target", seed=1, preset="tiny", config=None,
                         run_dir="/nonexistent")
    return tmp_path


def test_cli_figure3_writes_png_pdf_and_the_csv_of_the_numbers(results):
    proc = blast("report", "--figure", "3", "--results", str(results), "--last", "2")
    assert proc.returncode == 0, proc.stderr
    assert "mean of each run's last 2 evaluation(s)" in proc.stdout
    assert "missing (drawn n/a): video/+EMA" in proc.stdout
    # ladder_rows: 3 seeds of runs of different lengths; the cell without evaluations is not
    # among the cells drawn.
    assert re.search(r"drawn from preset tiny, 3 seeds per cell, [\d.]+k–[\d.]+k steps",
                     proc.stdout), proc.stdout
    folder = results / "reports" / "default"
    assert sorted(p.name for p in folder.iterdir()) == ["figure3-runs.csv", "figure3.csv",
                                                        "figure3.pdf", "figure3.png"]
    assert mpimg.imread(folder / "figure3.png").ndim == 3
    assert (folder / "figure3.pdf").read_bytes().startswith(b"%PDF")
    csv = pd.read_csv(folder / "figure3.csv")
    with Store.open(db_url(results=results)) as store:
        rows = store.metrics_frame("default", ["eval_score"])
    ref = reference_final(rows, 2)
    assert len(csv) == 30
    for _, row in csv.iterrows():
        if (row["env"], row["rung"]) == ("minigrid:video", "target"):
            assert row["n"] == 0 and np.isnan(row["mean"]) and row["shown"] == "missing"
            continue
        values = pd.Series(ref[(row["env"], row["rung"])])
        assert (row["mean"], row["std"]) == pytest.approx((values.mean(), values.std()))
    per_run = pd.read_csv(folder / "figure3-runs.csv")
    assert list(per_run.columns) == ["env", "rung", "seed", "steps", "final_score", "evals",
                                     "run_id"]
    assert len(per_run) == sum(map(len, ref.values())) and (per_run["evals"] == 2).all()
    cell_order = list(dict.fromkeys(zip(csv["env"], csv["rung"], strict=True)))
    drawn = list(dict.fromkeys(zip(per_run["env"], per_run["rung"], strict=True)))
    assert drawn == [c for c in cell_order if c in drawn]  # the figure's order
    for (env, rung), group in per_run.groupby(["env", "rung"]):
        assert sorted(group["final_score"]) == pytest.approx(sorted(ref[(env, rung)]))
    last = rows.sort_values("step").groupby("run_id")["step"].max()
    assert dict(zip(per_run["run_id"], per_run["steps"], strict=True)) == last.to_dict()


def test_cli_experiment_without_runs_exits_with_one_line(results):
    proc = blast("report", "--figure", "3", "--results", str(results), "--experiment", "nothing")
    assert proc.returncode == 2
    assert proc.stderr == ("error: experiment 'nothing' has no runs: nothing to report; "
                           "experiments with runs: default (--experiment NAME)\n")
    assert not (results / "reports").exists()
    proc = blast("report", "--stats", "--results", str(results / "elsewhere"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: no run database at ")
    assert len(proc.stderr.splitlines()) == 1 and not (results / "elsewhere").exists()
    proc = blast("report", "--results", str(results))
    assert proc.returncode == 2
    assert proc.stderr == "error: give exactly one of --figure N or --stats\n"


def test_every_store_figure_and_the_stats_from_sqlite(results, tmp_path):
    with Store.open(db_url(results=results)) as store:
        opts = build.ReportOptions(reps=100)
        with pytest.raises(BlastError, match="has no DMC runs"):
            build.build(4, store, opts)
        with pytest.raises(BlastError, match="has no runs of preset 'paper'"):
            build.build(3, store, build.ReportOptions(preset="paper"))
        made = {n: build.build(n, store, opts) for n in (3, 5, 6, None)}
        returns = build.build(3, store, build.ReportOptions(metric="eval_return"))
        typo = build.build(6, store, build.ReportOptions(metric="eval_scor"))
    assert returns.figure.axes[0].get_ylabel() == "eval_return"
    assert (returns.table["mean"] > made[3].table["mean"]).sum() == 29  # rows made +0.5 higher
    assert typo.table.empty and "no run of these has a 'eval_scor' row yet" in typo.notes[-1]
    assert made[6].table["frames"].min() > 0 and set(made[6].table["env"]) == set(VARIANTS)
    # Figure 5 with no latent_only run yet: every latent-only slot is drawn missing.
    fig5 = made[5].table
    assert list(fig5["rung"]) == ["ar_prior", "latent_only"] * 5
    assert (fig5[fig5["rung"] == "latent_only"]["shown"] == "missing").all()
    assert "4 of 5 tasks" in made[None].table.set_index("label").loc["+EMA", "warning"]
    written = build.save(made[None], tmp_path / "out")
    assert [p.name for p in written] == ["stats.png", "stats.pdf", "stats.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(written[-1]).fillna(""), made[None].table,
                                  check_dtype=False)


def test_ylim_limits_the_score_axis_and_says_how_much_is_cut(results, capsys):
    with Store.open(db_url(results=results)) as store:
        full = {n: build.build(n, store, build.ReportOptions()) for n in (3, 6)}
        for n in (3, 6):
            low, high = np.nanpercentile(full[n].table["mean"], [20, 80])
            made = build.build(n, store, build.ReportOptions(ylim=(low, high)))
            panels = [ax for ax in made.figure.axes if ax.axison]
            assert len(panels) == {3: 1, 6: 5}[n]  # bars in one panel; a curve panel per env
            assert all(ax.get_ylim() == (low, high) for ax in panels)
            pd.testing.assert_frame_equal(made.table, full[n].table)  # the CSV keeps everything
            means = made.table["mean"].dropna()
            outside = int(((means < low) | (means > high)).sum())
            assert outside > 0 and made.notes[-1].startswith(
                f"score axis limited to [{low:g}, {high:g}] (--ylim): {outside} drawn value(s)")
        with pytest.raises(BlastError, match="not figure 8"):
            build.build(8, store, build.ReportOptions(ylim=(0, 1)))
        with pytest.raises(BlastError, match="not of --stats"):
            build.build(None, store, build.ReportOptions(ylim=(0, 1)))
    for bad, message in [("1", "takes LOW,HIGH"), ("a,b", "takes LOW,HIGH"),
                         ("3,1", "LOW < HIGH")]:
        code, _, err = blast_here(capsys, "report", "--figure", "3", "--results", str(results),
                                   f"--ylim={bad}")
        assert code == 2 and message in err and err.count("\n") == 1


def test_mixed_presets_need_a_choice(tmp_path):
    rows = pd.concat([ladder_rows(envs=VARIANTS[:1], rungs=["dv2"], seeds=1),
                      ladder_rows(envs=VARIANTS[:1], rungs=["bn"], seeds=1).assign(
                          preset="cpu", run_id=lambda d: d["run_id"].str.replace("tiny", "cpu"))])
    with Store.open(db_url(results=tmp_path)) as store:
        write_rows(store, rows)
        with pytest.raises(BlastError,
                           match="mixes presets 'cpu', 'tiny': choose one with --preset"):
            build.build(3, store, build.ReportOptions())
        table = build.build(3, store, build.ReportOptions(preset="cpu")).table
    assert list(table[table["n"] > 0]["rung"]) == ["bn"]


def test_runs_made_with_other_settings_are_not_more_seeds(tmp_path):
    base = ladder_rows(envs=VARIANTS[:1], rungs=["dv2"], seeds=2)
    longer = base.assign(run_id=lambda d: d["run_id"] + "__0a1b2c3d",
                         value=lambda d: d["value"] + 100)
    with Store.open(db_url(results=tmp_path)) as store:
        write_rows(store, base)
        write_rows(store, longer, steps=30000, overrides={"rssm.stoch": 8})
        with pytest.raises(BlastError, match="mixes run settings \\(none\\), 'steps=30000 "
                           "rssm.stoch=8': choose one with --settings"):
            build.build(3, store, build.ReportOptions())
        tables = {s: build.build(3, store, build.ReportOptions(settings=s)).table
                  for s in ("", "steps=30000 rssm.stoch=8")}
        with pytest.raises(BlastError, match="no runs of settings 'steps=1'"):
            build.build(3, store, build.ReportOptions(settings="steps=1"))
    plain, other = (t[t["n"] > 0].iloc[0] for t in tables.values())
    assert plain["n"] == other["n"] == 2 and other["mean"] == pytest.approx(plain["mean"] + 100)
    proc = blast("report", "--figure", "3", "--results", str(tmp_path), "--settings", "")
    assert proc.returncode == 0, proc.stderr


def test_compare_settings_draws_each_kind_of_run_beside_its_rung(tmp_path):
    base = ladder_rows(envs=VARIANTS[:1], rungs=["dv2", "ar_prior"], seeds=3)
    variant = base[base["rung"] == "ar_prior"].assign(run_id=lambda d: d["run_id"] + "__0a1b2c3d",
                                                      value=lambda d: d["value"] + 100)
    with Store.open(db_url(results=tmp_path)) as store:
        write_rows(store, base, steps=30000)
        write_rows(store, variant, steps=30000, overrides={"rssm.ar_net": "made"})
        opts = build.ReportOptions(compare_settings=True)
        bars3, curves6, table = (build.build(n, store, opts) for n in (3, 6, None))
        with pytest.raises(BlastError, match="--settings .* or --compare-settings .*not both"):
            build.build(3, store, build.ReportOptions(settings="", compare_settings=True))
        with pytest.raises(BlastError, match="not figure 5"):
            build.build(5, store, opts)
    made = "ar_prior [rssm.ar_net=made]"  # steps=30000, shared by every run, is left out
    assert list(bars3.table["rung"]) == ["dv2", "ar_prior", made]
    assert list(bars3.table["label"]) == ["DV2", "+AR", "+AR [rssm.ar_net=made]"]
    cells = bars3.table.set_index("rung")
    assert cells.loc[made, "n"] == cells.loc["ar_prior", "n"] == 3
    assert cells.loc[made, "mean"] == pytest.approx(cells.loc["ar_prior", "mean"] + 100)
    legend = bars3.figure.axes[0].get_legend()
    assert len({p.get_facecolor() for p in legend.get_patches()}) == 3  # not its rung's colour
    assert set(curves6.table["rung"]) == {"dv2", "ar_prior", made}
    poi = table.table[table.table["kind"] == "poi"].set_index("rung")
    assert poi.loc[made, "versus"] == "ar_prior" and poi.loc[made, "estimate"] == 1.0
    proc = blast("report", "--stats", "--compare-settings", "--results", str(tmp_path),
                 "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "P(+AR [rssm.ar_net=made] > +AR)" in proc.stdout  # brackets are not rich markup


def test_rung_filter_lays_out_only_the_rungs_asked_for(tmp_path):
    rows = ladder_rows(envs=VARIANTS[:2], rungs=["dv2", "bn", "ar_prior"], seeds=2)
    with Store.open(db_url(results=tmp_path)) as store:
        write_rows(store, rows)
        whole = build.build(3, store, build.ReportOptions())
        opts = build.ReportOptions(rungs=("ar_prior", "dv2"))
        bars3, curves6 = build.build(3, store, opts), build.build(6, store, opts)
        with pytest.raises(BlastError, match="unknown rung 'ar'; valid: dv2, "):
            build.build(3, store, build.ReportOptions(rungs=("ar",)))
        with pytest.raises(BlastError, match="has no runs of rung target"):
            build.build(3, store, build.ReportOptions(rungs=("target",)))
    # The whole ladder lays out six rungs per env, three of them n/a; the filter only the two.
    assert len(whole.table) == 2 * 6 and (whole.table["n"] == 0).sum() == 2 * 3
    assert list(bars3.table["rung"]) == ["ar_prior", "dv2"] * 2
    assert (bars3.table["n"] == 2).all()
    (ax,) = bars3.figure.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["+AR", "DV2"]
    assert set(curves6.table["rung"]) == {"ar_prior", "dv2"}
    fig = curves6.figure
    legends = fig.legends + [a.get_legend() for a in fig.axes if a.get_legend()]
    assert [[t.get_text() for t in g.get_texts()] for g in legends] == [["+AR", "DV2"]]
    assert not any("no data" in t.get_text() for a in curves6.figure.axes for t in a.texts)
    proc = blast("report", "--figure", "3", "--results", str(tmp_path), "--rungs", "bn")
    assert proc.returncode == 0, proc.stderr


def test_the_same_reports_from_postgresql_as_from_sqlite(pg_url, tmp_path):
    rows = ladder_rows(seeds=2, skip=(("minigrid:smaller_agent", "bn"),))
    tables = {}
    for url in (db_url(results=tmp_path), pg_url):
        with Store.open(url) as store:
            write_rows(store, rows)
            tables[url] = {n: build.build(n, store, build.ReportOptions(reps=100)).table
                           for n in (3, 6, None)}
    sqlite, pg = tables.values()
    for n in (3, 6, None):
        pd.testing.assert_frame_equal(sqlite[n], pg[n])
    proc = blast("report", "--figure", "3", "--db", pg_url, "--out", str(tmp_path / "pg"))
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "pg" / "figure3.csv").fillna(""),
                                  sqlite[3].fillna(""), check_dtype=False)
    proc = blast("report", "--stats", "--db", pg_url, "--experiment", "none")
    assert proc.returncode == 2
    assert proc.stderr == ("error: experiment 'none' has no runs: nothing to report; "
                           "experiments with runs: default (--experiment NAME)\n")


def test_done_draws_only_finished_runs(results):
    with Store.open(db_url(results=results)) as store:
        partial = next(r["id"] for r in store.runs() if r["rung"] == "dv2")
        store.set_status(partial, "interrupted")
    folder = results / "reports" / "default"
    for flag, expected in (([], True), (["--done"], False)):
        proc = blast("report", "--figure", "3", "--results", str(results), *flag)
        assert proc.returncode == 0, proc.stderr
        per_run = pd.read_csv(folder / "figure3-runs.csv")
        assert (partial in set(per_run["run_id"])) == expected
    with Store.open(db_url(results=results)) as store:
        for run in store.runs():
            store.set_status(run["id"], "interrupted")
    proc = blast("report", "--figure", "3", "--results", str(results), "--done")
    assert proc.returncode == 2 and "no finished runs (--done)" in proc.stderr
