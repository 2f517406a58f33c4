"""The numbers behind the figures: pure functions of the tidy metrics DataFrame.

Input is `Store.metrics_frame(...)`: one row per (run_id, step, frames, name, value) with the run's
env, rung, seed and preset. Two rules turn those rows into what is drawn, both options of
`blast report` and printed under every figure:

* final score (bars): per run, the mean of its last `last` evaluations (all of them when it has
  fewer); per (env, rung), the mean and the sample std (ddof=1, pandas' default) over runs.
* curves: runs evaluate at different frames (resumes, eval cadences), so values are first put in
  bins of `width` env frames, bin k holding (k-1)*width < frames <= k*width, drawn at x = k*width;
  a run's values in one bin are averaged, then mean and std go over the runs present in that bin.
  A run with no value in a bin is left out of it: never interpolated, never counted as zero.

The unit of replication is the run (one seed of one env x rung); a missing run stays missing (NaN,
n = 0) so a figure can show it as such.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from blast_core.config import RUNGS
from blast_core.envs import ENV_IDS
from blast_core.errors import BlastError

RUN_KEYS = ["run_id", "env", "rung", "seed"]
FAMILY_NAMES = {"minigrid": "MiniGrid", "dmc": "DMC"}
YLABELS = {"minigrid": "score (goals − collisions)", "dmc": "return"}
"""The unit of `eval_score` per family: MiniGrid's paper metric, DMC's episode return."""

# The paper's order of tasks (Figures 2/3 for MiniGrid, Figure 4 for DMC); any other env follows
# them alphabetically.
PAPER_ORDER = ENV_IDS


def family(env: str) -> str:
    """`minigrid:video` -> `minigrid`."""
    return env.split(":", 1)[0]


def env_label(env: str) -> str:
    """The task's name as the paper prints it: `minigrid:video` -> `video`."""
    return env.split(":", 1)[-1]


def order_envs(envs: list[str] | pd.Series) -> list[str]:
    """Unique envs in the paper's order, unknown ones after it alphabetically."""
    rank = {e: i for i, e in enumerate(PAPER_ORDER)}
    return sorted(set(envs), key=lambda e: (rank.get(e, len(rank)), e))


def series_key(rung: str, settings: str) -> str:
    """What one bar or curve shows: a rung, or with `--compare-settings` a rung made with other
    run settings, e.g. `ar_prior [rssm.ar_net=made]`."""
    return f"{rung} [{settings}]" if settings else rung


def series_rung(key: str) -> str:
    """`ar_prior [rssm.ar_net=made]` -> `ar_prior`."""
    return key.split(" [", 1)[0]


def series_label(key: str) -> str:
    """The paper's label of the rung, with the settings of a variant: `+AR [rssm.ar_net=made]`."""
    rung, _, rest = key.partition(" [")
    base = RUNGS[rung].label if rung in RUNGS else rung
    return f"{base} [{rest}" if rest else base


def distinct_settings(settings: list[str]) -> list[str]:
    """Each run's settings without the items every run shares (`steps=30000` when all ran
    30k steps), so that labels name what differs."""
    common = set.intersection(*(set(s.split()) for s in settings)) if settings else set()
    return [" ".join(i for i in s.split() if i not in common) for s in settings]


def order_series(keys, rungs=None) -> list[str]:
    """Unique keys by their rung (in `rungs`' order, default the ladder's); within a rung, by how
    many settings they change (its own runs first), then by text. The first of each rung is what
    --stats compares the others with."""
    rank = {r: i for i, r in enumerate(rungs or RUNGS)}
    return sorted(set(keys), key=lambda k: (rank.get(series_rung(k), len(rank)),
                                            len(k.split()) - 1, k))


def final_rule_text(last: int) -> str:
    """The final-score rule in words, printed with every bar figure."""
    return (
        f"final score = mean of each run's last {last} evaluation(s); "
        "bars: mean ± std (ddof=1) over seeds; n/a: no evaluation yet"
    )


def bin_rule_text(width: float) -> str:
    """The binning rule in words, printed with every curve figure."""
    return (
        f"curves: per run, evaluations averaged in bins of {width:g} env frames "
        "(drawn at the bin's end), then mean ± std over the seeds present in each bin"
    )


def metric_rows(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The finite rows of one metric, with a check that the frame has the store's columns."""
    need = {*RUN_KEYS, "step", "frames", "name", "value"}
    missing = need - set(metrics.columns)
    if missing:
        raise BlastError(f"metrics frame lacks column(s) {sorted(missing)}")
    rows = metrics[metrics["name"] == metric]
    return rows[rows["value"].notna()]  # the store keeps a non-finite value as NULL: not a score


def final_scores(metrics: pd.DataFrame, metric: str, last: int) -> pd.DataFrame:
    """One row per run: the mean of its last `last` values of `metric` (by step).

    Columns: run_id, env, rung, seed, score, evals (values averaged), step and frames (agent
    steps and env frames of the last one).
    """
    if last < 1:
        raise BlastError(f"--last must be >= 1, got {last}")
    rows = metric_rows(metrics, metric).sort_values(["run_id", "step"])
    tail = rows.groupby("run_id", sort=True).tail(last)
    out = tail.groupby(RUN_KEYS, sort=True).agg(
        score=("value", "mean"), evals=("value", "size"), step=("step", "max"),
        frames=("frames", "max")
    )
    return out.reset_index()


def cells(envs: list[str], rungs: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """The env x rung grid a figure must show, in drawing order (envs as given, rungs as given)."""
    grid = [(e, r) for e in envs for r in rungs]
    return pd.DataFrame(grid, columns=["env", "rung"])


def summarize_final(final: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over runs for every (env, rung) of `grid`; cells without runs get n = 0.

    Columns: env, rung, label, mean, std, n, seeds (the seeds behind the number, e.g. "1 2 3").
    """
    stats = final.groupby(["env", "rung"]).agg(
        mean=("score", "mean"),
        std=("score", "std"),
        n=("score", "size"),
        seeds=("seed", lambda s: " ".join(str(int(x)) for x in sorted(s))),
    )
    out = grid.merge(stats.reset_index(), on=["env", "rung"], how="left")
    out["n"] = out["n"].fillna(0).astype(int)
    out["seeds"] = out["seeds"].fillna("")
    out.insert(2, "label", [series_label(r) for r in out["rung"]])
    return out


def auto_bin_width(metrics: pd.DataFrame, metric: str) -> float:
    """A bin width that gives each run about one evaluation per bin.

    The largest over runs of the median gap between a run's evaluation frames, so that the run
    that evaluates least often still has a value in (almost) every bin. 1 when no run has two.
    """
    rows = metric_rows(metrics, metric)
    gaps = [
        float(np.median(np.diff(np.sort(g["frames"].unique()))))
        for _, g in rows.groupby("run_id")
        if g["frames"].nunique() > 1
    ]
    return max(gaps) if gaps else 1.0


def bin_curves(metrics: pd.DataFrame, metric: str, width: float) -> pd.DataFrame:
    """Learning curves per (env, rung) on a common x grid (the binning rule in the module doc).

    Columns: env, rung, label, frames (the bin's end), mean, std, n (runs with a value there).
    """
    if not width > 0:
        raise BlastError(f"--bin must be > 0 env frames, got {width}")
    rows = metric_rows(metrics, metric).copy()
    rows["bin"] = [math.ceil(f / width) for f in rows["frames"]]
    per_run = rows.groupby([*RUN_KEYS, "bin"], sort=True)["value"].mean().reset_index()
    out = per_run.groupby(["env", "rung", "bin"], sort=True)["value"].agg(
        mean="mean", std="std", n="size"
    )
    out = out.reset_index()
    out.insert(2, "label", [series_label(r) for r in out["rung"]])
    out.insert(3, "frames", out.pop("bin") * width)
    return out
