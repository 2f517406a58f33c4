"""Aggregate statistics of the ladder with rliable (Agarwal et al. 2021).

Per env family (MiniGrid variants, DMC tasks are the *tasks*; seeds are the *runs*):

* the interquartile mean (IQM) of the final scores of each rung, over all seeds x tasks, with a
  stratified-bootstrap 95 % interval (seeds resampled within each task);
* the probability of improvement P(rung k > rung k-1) for adjacent rungs of the ladder (and of
  `latent only` over +AR when present): a Mann-Whitney U statistic per task, averaged over tasks,
  with an independent-samples stratified-bootstrap 95 % interval.

rliable needs a rectangular seeds x tasks matrix per rung, so where tasks have different numbers of
seeds each task keeps its lowest-numbered `n` seeds, `n` being the smallest count; the dropped runs
are reported. A rung missing a task is aggregated over the tasks it has and flagged. Every number
backed by fewer than `MIN_SEEDS` seeds per task carries a warning. No normalisation is applied:
the MiniGrid variants share one score scale and the DMC tasks the natural [0, 1000].
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from blast_core.config import LADDER_IDS
from blast_core.report.figures import add_caption, rung_color, rung_label
from blast_core.report.frames import FAMILY_NAMES, family, order_envs, order_series, series_rung

MIN_SEEDS = 5
"""Fewer seeds per task than this and a number gets a warning (rliable's advice: CIs widen fast)."""

LABEL_CHARS = 30
"""Width at which the panels' row labels wrap."""
COLUMNS = ["family", "kind", "rung", "versus", "label", "estimate", "ci_low", "ci_high", "seeds",
           "tasks", "warning"]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws from numpy's global RNG: seed it, then give the old state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def score_matrix(final: pd.DataFrame, rung: str, tasks: list[str]) -> tuple[np.ndarray, list, int]:
    """A rung's final scores as rliable's (seeds x tasks) matrix over the tasks it has.

    Returns (matrix, tasks used, runs dropped to make it rectangular).
    """
    rows = final[final["rung"] == rung]
    have = [t for t in tasks if (rows["env"] == t).any()]
    if not have:
        return np.zeros((0, 0)), [], 0
    per_task = [rows[rows["env"] == t].sort_values("seed")["score"].to_numpy() for t in have]
    n = min(len(s) for s in per_task)
    dropped = sum(len(s) - n for s in per_task)
    return np.stack([s[:n] for s in per_task], axis=1), have, dropped


def _warning(seeds: int, tasks: int, total: int, dropped: int) -> str:
    notes = []
    if seeds < MIN_SEEDS:
        notes.append(f"only {seeds} seed(s) per task (< {MIN_SEEDS})")
    if tasks < total:
        notes.append(f"{tasks} of {total} tasks")
    if dropped:
        notes.append(f"{dropped} run(s) dropped to equalise seeds")
    return "; ".join(notes)


def _pairs(rungs: list[str], versus: str | None = None) -> list[tuple[str, str]]:
    """(rung, the one before it) for adjacent ladder rungs present, latent only vs +AR, with
    `--compare-settings` each other kind of run of a rung vs its first (`order_series`), and
    with `versus` every other rung against that one (`--versus dv2`: each change over DV2)."""
    ladder = [r for r in LADDER_IDS if r in rungs]
    pairs = list(zip(ladder[1:], ladder[:-1], strict=True))
    if versus in rungs:
        pairs += [(r, versus) for r in rungs if r != versus and (r, versus) not in pairs]
    if "latent_only" in rungs and "ar_prior" in rungs:
        pairs.append(("latent_only", "ar_prior"))
    first = {}
    for key in rungs:  # in order_series' order
        first.setdefault(series_rung(key), key)
    pairs += [(k, first[series_rung(k)]) for k in rungs if k != first[series_rung(k)]]
    return pairs


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's P(X > Y) for (runs x tasks) score matrices: per task the Mann-Whitney U of X
    over Y divided by n_x n_y, i.e. P(x > y) + P(x = y) / 2 over all pairs of runs, averaged
    over tasks (NaN where a task has a NaN score). The same statistic as
    `rliable.metrics.probability_of_improvement`, counted over all pairs at once: the bootstrap
    calls it once per resample, and scipy's per-task call cost 35 s of a 36 s Figure-4 report."""
    pairs = (x[:, None, :] > y[None, :, :]) + 0.5 * (x[:, None, :] == y[None, :, :])
    by_task = pairs.mean(axis=(0, 1))
    by_task[np.isnan(x).any(axis=0) | np.isnan(y).any(axis=0)] = np.nan
    return float(by_task.mean())


def family_stats(final: pd.DataFrame, fam: str, reps: int, seed: int = 0,
                 versus: str | None = None) -> pd.DataFrame:
    """IQM rows (one per rung with data) and probability-of-improvement rows for one family, or
    for one env when `fam` is an env id (its seeds alone: one task)."""
    from rliable import library, metrics  # scipy and arch, seconds: only for --stats

    final = final[[fam in (e, family(e)) for e in final["env"]]]
    tasks = order_envs(final["env"])
    rungs = order_series(final["rung"])
    mats = {r: score_matrix(final, r, tasks) for r in rungs}
    rows = []
    with _seeded(seed):
        for r in rungs:
            mat, have, dropped = mats[r]
            point, ci = library.get_interval_estimates(
                {r: mat}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps
            )
            rows.append([fam, "iqm", r, "", rung_label(r), float(point[r][0]), float(ci[r][0, 0]),
                         float(ci[r][1, 0]), mat.shape[0], f"{len(have)}/{len(tasks)}",
                         _warning(mat.shape[0], len(have), len(tasks), dropped)])
        for r, prev in _pairs(rungs, versus):
            common = [t for t in mats[r][1] if t in mats[prev][1]]
            if not common:
                continue
            x = mats[r][0][:, [mats[r][1].index(t) for t in common]]
            y = mats[prev][0][:, [mats[prev][1].index(t) for t in common]]
            point, ci = library.get_interval_estimates(
                {"p": [x, y]}, probability_of_improvement, reps=reps
            )
            seeds = min(x.shape[0], y.shape[0])
            low, high = np.ravel(ci["p"])
            rows.append([fam, "poi", r, prev, f"P({rung_label(r)} > {rung_label(prev)})",
                         float(point["p"]), float(low), float(high),
                         seeds, f"{len(common)}/{len(tasks)}",
                         _warning(seeds, len(common), len(tasks), 0)])
    return pd.DataFrame(rows, columns=COLUMNS)


def ladder_stats(final: pd.DataFrame, reps: int = 2000, seed: int = 0, *,
                 per_env: bool = False, versus: str | None = None) -> pd.DataFrame:
    """`family_stats` for every env family present, MiniGrid first; with `per_env`, each
    family followed by each of its envs on its own."""
    fams = [f for f in ("minigrid", "dmc") if any(family(e) == f for e in final["env"])]
    fams += sorted({family(e) for e in final["env"]} - set(fams))
    groups = [g for f in fams for g in [f, *(
        order_envs([e for e in final["env"] if family(e) == f]) if per_env else [])]]
    parts = [family_stats(final, g, reps, seed, versus) for g in groups]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def _interval_rows(ax, part: pd.DataFrame, keys: list[str]) -> None:
    """One row per estimate: the 95 % interval as a bar, the point as a black tick and dot."""
    y = np.arange(len(part))[::-1]
    for yi, (_, row) in zip(y, part.iterrows(), strict=True):
        color = rung_color(row["rung"], keys)
        ax.barh(yi, row["ci_high"] - row["ci_low"], left=row["ci_low"], height=0.6, color=color,
                alpha=0.55)
        # The tick and dot stay visible when the interval is a point (e.g. P = 0 with 1 seed).
        ax.plot([row["estimate"]] * 2, [yi - 0.3, yi + 0.3], color="k", linewidth=1.6,
                clip_on=False)
        ax.plot(row["estimate"], yi, "o", color="k", markersize=3, clip_on=False)
        if row["warning"]:
            ax.text(1.0, yi, " !", transform=ax.get_yaxis_transform(), color="#c44e52",
                    va="center", fontsize=9, fontweight="bold")
    if part.empty:
        ax.text(0.5, 0.5, "n/a: needs two adjacent rungs", transform=ax.transAxes, ha="center",
                va="center", color="0.4")
    # Variants' labels (`--compare-settings`) are long: wrapped, they leave the panel its width.
    ax.set_yticks(y, [textwrap.fill(label, LABEL_CHARS) for label in part["label"]], fontsize=9)
    ax.set_ylim(-0.6, len(part) - 0.4)
    if not part.empty:  # pad by hand: barh's sticky edges defeat ax.margins
        lo, hi = part["ci_low"].min(), part["ci_high"].max()
        pad = 0.08 * (hi - lo) if hi > lo else max(1.0, 0.1 * abs(hi))
        ax.set_xlim(lo - pad, hi + pad)
    ax.grid(axis="x", alpha=0.3)


def stats_figure(stats: pd.DataFrame, caption: str, xlabels: dict[str, str]) -> Figure:
    """Per family: IQM with 95 % CIs per rung (left), P(improvement) per adjacent pair (right).

    `xlabels` maps a family to the unit of its scores (e.g. `return`).
    """
    fams = list(dict.fromkeys(stats["family"]))
    lines = [textwrap.fill(label, LABEL_CHARS).count("\n") + 1 for label in stats["label"]]
    rows = max(stats.groupby(["family", "kind"]).size().max() if len(stats) else 1, 1)
    height = max(3.0, 0.45 * rows * max(lines, default=1) + 1.2)
    fig = Figure(figsize=(10, height * len(fams) + 0.8), layout="constrained")
    axes = fig.subplots(len(fams), 2, squeeze=False)
    for (ax_iqm, ax_poi), fam in zip(axes, fams, strict=True):
        part = stats[stats["family"] == fam]
        keys = list(part[part["kind"] == "iqm"]["rung"])  # one colour per rung in both panels
        _interval_rows(ax_iqm, part[part["kind"] == "iqm"], keys)
        _interval_rows(ax_poi, part[part["kind"] == "poi"], keys)
        name = FAMILY_NAMES.get(fam, fam)
        ax_iqm.set_title(f"{name}: IQM of the final score, 95% CI", fontsize=10)
        ax_iqm.set_xlabel(xlabels.get(fam, "score"))
        ax_poi.set_title(f"{name}: P(improvement), 95% CI", fontsize=10)
        ax_poi.set_xlabel("probability of improvement")
        ax_poi.axvline(0.5, color="0.4", linestyle="--", linewidth=1)
        ax_poi.set_xlim(-0.04, 1.04)
    fig.suptitle("Ladder statistics (rliable: seeds = runs, envs = tasks)", fontsize=11)
    add_caption(fig, caption)
    return fig
