"""`blast report`'s work: read the run database, compute, draw, and write PNG + PDF + CSV.

Everything is computed and drawn before the first file is written, and each file is written to a
temporary name and renamed, so a bad option or an empty experiment leaves nothing half-written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import yaml
from matplotlib.figure import Figure

from blast_core.config import LADDER_IDS, RUNG_IDS, Config
from blast_core.config.tree import from_dict
from blast_core.envs import MINIGRID_IDS
from blast_core.errors import BlastError, ConfigError
from blast_core.report import LAST, figures, frames, gather, stats

FIGURES = (2, 3, 4, 5, 6, 7, 8)
FAMILY_NAMES = frames.FAMILY_NAMES
YLABELS = frames.YLABELS


class RunSource(Protocol):
    """What a report reads: `blast_core.store.Store` provides it."""

    def runs(self, experiment: str | None = None) -> list[dict]: ...

    def metrics_frame(
        self, experiment: str | None = None, names: list[str] | None = None
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class ReportOptions:
    """The rules of a report; each is a `blast report` option and is printed with the figure."""

    experiment: str = "default"
    """The experiment whose runs are drawn."""
    metric: str = "eval_score"
    """The evaluation metric of bars, curves and statistics."""
    last: int = LAST
    """Final score = mean of each run's last `last` evaluations."""
    bin: float | None = None
    """Curve bin width in env frames; None picks one (`frames.auto_bin_width`)."""
    preset: str | None = None
    """Only runs of this preset; needed when an experiment mixes presets."""
    settings: str | None = None
    """Only runs made with these `--steps`/`--set` settings (`settings_label`'s text, "" for
    none); needed when an experiment holds runs of one cell that differ in them."""
    reps: int = 2000
    """Bootstrap replications of the statistics."""
    rungs: tuple[str, ...] | None = None
    """Only these rungs, in this order (None: the whole ladder): a figure of a subset
    experiment then shows and lists just the rungs that were run."""
    compare_settings: bool = False
    """Runs of one rung made with other `--steps`/`--set` settings become bars and curves of
    their own (`ar_prior [rssm.ar_net=made]` beside `ar_prior`), and --stats compares each with
    its rung's first kind (`frames.order_series`), instead of the experiment being refused as
    mixed. Only the rungs and kinds present are laid out."""
    done_only: bool = False
    """Only runs that finished (state `done`): a figure of final scores without the runs still
    on their way."""
    per_env: bool = False
    """--stats also for each env on its own (its seeds alone), after its family's rows."""
    versus: str | None = None
    """--stats also gives P(rung > `versus`) for every other rung (e.g. each change over dv2),
    beside the adjacent pairs of the ladder."""
    ylim: tuple[float, float] | None = None
    """Score axis (low, high) of figures 3-7, e.g. to look past a run's first evaluations;
    None: fitted to the data. What falls outside leaves the view, never the CSV."""

    def ladder(self) -> tuple[str, ...]:
        """The rungs a ladder figure lays out."""
        return self.rungs or LADDER_IDS

    def series(self, runs: pd.DataFrame) -> list[str]:
        """What a ladder figure lays out: the ladder's rungs, or with `compare_settings` each
        rung and variant present in `runs`, in the ladder's order."""
        if not self.compare_settings:
            return list(self.ladder())
        keys = [k for k in runs["rung"] if frames.series_rung(k) in self.ladder()]
        return frames.order_series(keys, self.ladder())


@dataclass
class Report:
    """What was made: the figure (or None), the numbers drawn, notes for the terminal."""

    name: str
    figure: Figure | None
    table: pd.DataFrame
    notes: list[str]
    runs: pd.DataFrame | None = None
    """One row per run behind the numbers (the final-score figures): `<name>-runs.csv`."""


# --- reading ------------------------------------------------------------------------------------


def load_runs(source: RunSource, opts: ReportOptions, fam: str | None) -> pd.DataFrame:
    """The experiment's registered runs (any status) of one family, as a DataFrame.

    Raises a one-line BlastError when the experiment has no runs, no runs of the family, or mixes
    presets or run settings without `--preset` / `--settings` choosing one.
    """
    runs = pd.DataFrame(source.runs(opts.experiment))
    runs = runs.rename(columns={"id": "run_id"})  # the store's runs table calls it `id`
    if runs.empty:
        known = sorted({r["experiment"] for r in source.runs()})
        hint = (f"; experiments with runs: {', '.join(known)} (--experiment NAME)" if known
                else "")
        raise BlastError(f"experiment {opts.experiment!r} has no runs: nothing to report{hint}")
    if fam is not None:
        runs = runs[[frames.family(e) == fam for e in runs["env"]]]
        if runs.empty:
            raise BlastError(f"experiment {opts.experiment!r} has no {FAMILY_NAMES[fam]} runs "
                             f"({fam}:* envs)")
    if opts.rungs:
        unknown = [r for r in opts.rungs if r not in RUNG_IDS]
        if unknown:
            raise BlastError(f"unknown rung {unknown[0]!r}; valid: {', '.join(RUNG_IDS)}")
        runs = runs[runs["rung"].isin(opts.rungs)]
        if runs.empty:
            raise BlastError(f"experiment {opts.experiment!r} has no runs of rung "
                             f"{', '.join(opts.rungs)}")
    if opts.done_only:
        runs = runs[runs["status"] == "done"]
        if runs.empty:
            raise BlastError(f"experiment {opts.experiment!r} has no finished runs (--done)")
    runs = _one_kind(runs, "preset", opts.preset, opts.experiment, "presets", "--preset")
    # Seeds of one cell are replicates only if they were made with the same settings: a run
    # with --steps or --set of its own is another experiment, not another seed.
    runs = runs.assign(settings=[settings_label(o, s) for o, s in
                                 zip(runs["overrides"], runs["steps"], strict=True)])
    if opts.compare_settings:
        if opts.settings is not None:
            raise BlastError("give --settings (one kind of run) or --compare-settings (each kind "
                             "its own bars), not both")
        distinct = frames.distinct_settings(list(runs["settings"]))
        return runs.assign(rung=[frames.series_key(r, s) for r, s in
                                 zip(runs["rung"], distinct, strict=True)])
    return _one_kind(runs, "settings", opts.settings, opts.experiment, "run settings",
                     "--settings (the quoted text; '' for none)")


def _one_kind(runs: pd.DataFrame, column: str, chosen: str | None, experiment: str,
              what: str, option: str) -> pd.DataFrame:
    """The runs whose `column` is `chosen` (all when None), which must then agree on it: a
    report pools runs as seeds only when they were made alike."""
    def label(value: str) -> str:
        return repr(value) if value else "(none)"

    if chosen is not None:
        runs = runs[runs[column] == chosen]
        if runs.empty:
            raise BlastError(f"experiment {experiment!r} has no runs of {column} {label(chosen)}")
    kinds = sorted(set(runs[column]))
    if len(kinds) > 1:
        raise BlastError(f"experiment {experiment!r} mixes {what} "
                         f"{', '.join(map(label, kinds))}: choose one with {option}")
    return runs


def settings_label(overrides: Any, steps: Any) -> str:
    """A run's `--steps`/`--set` settings as one text, e.g. `steps=30000 rssm.stoch=8`."""
    items = [f"steps={int(steps)}"] if steps is not None and not pd.isna(steps) else []
    items += [f"{k}={v}" for k, v in sorted((overrides or {}).items())]
    return " ".join(items)


def provenance(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str) -> str:
    """What a figure was drawn from, for its caption: preset, seeds per cell and agent steps
    reached (of the runs with a value of `metric`), e.g. "preset cpu, 3 seeds, 50k steps"."""
    rows = metrics[metrics["name"] == metric]
    last = rows.groupby("run_id")["step"].max()
    drawn = runs[runs["run_id"].isin(last.index)]
    if drawn.empty:
        return f"preset {', '.join(sorted(set(runs['preset'])))}, no evaluations yet"
    seeds = drawn.groupby(["env", "rung"])["seed"].nunique()

    def span(lo: str, hi: str) -> str:
        return lo if lo == hi else f"{lo}–{hi}"

    steps = span(*(f"{v / 1000:.3g}k" for v in (last.min(), last.max())))
    n = span(str(seeds.min()), str(seeds.max()))
    return (f"preset {', '.join(sorted(set(drawn['preset'])))}, {n} seed"
            f"{'s' if seeds.max() > 1 else ''} per cell, {steps} steps")


def load_metrics(source: RunSource, runs: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The metric rows of exactly `runs`."""
    parts = [source.metrics_frame(e, names) for e in sorted(set(runs["experiment"]))]
    metrics = pd.concat(parts, ignore_index=True)
    metrics = metrics[metrics["run_id"].isin(set(runs["run_id"]))]
    # The series each run is drawn in (its rung, or its rung and settings): the runs' own.
    return metrics.assign(rung=metrics["run_id"].map(dict(zip(runs["run_id"], runs["rung"],
                                                             strict=True))))


def _ylabel(fam: str, metric: str) -> str:
    return YLABELS[fam] if metric == "eval_score" else metric


def _no_rows_note(metrics: pd.DataFrame, metric: str) -> list[str]:
    """Say so when nothing is drawn because no run has logged `metric` (yet, or a typo)."""
    return [] if len(frames.metric_rows(metrics, metric)) else [
        f"note: no run of these has a {metric!r} row yet (--metric names the evaluation metric)"]


# --- figures ------------------------------------------------------------------------------------


def _missing_note(summary: pd.DataFrame) -> list[str]:
    gone = summary[summary["n"] == 0]
    if gone.empty:
        return []
    cells = ", ".join(f"{frames.env_label(e)}/{lab}" for e, lab in zip(gone["env"], gone["label"],
                                                                      strict=True))
    return [f"missing (drawn n/a): {cells}"]


def ladder_bars(source: RunSource, opts: ReportOptions, fam: str, number: int) -> Report:
    """Figures 3 (MiniGrid) and 4 (DMC): final score per task x rung."""
    runs = load_runs(source, opts, fam)
    metrics = load_metrics(source, runs, [opts.metric])
    final = frames.final_scores(metrics, opts.metric, opts.last)
    grid = frames.cells(frames.order_envs(runs["env"]), opts.series(runs))
    summary = frames.summarize_final(final, grid)
    rule = frames.final_rule_text(opts.last)
    drawn = provenance(runs, metrics, opts.metric)
    fig, table = figures.bar_figure(
        summary, title=f"Figure {number}: {FAMILY_NAMES[fam]}, final {opts.metric} per rung",
        ylabel=_ylabel(fam, opts.metric), caption=f"{opts.experiment} ({drawn}): {rule}",
    )
    notes = [f"drawn from {drawn}", rule, *_missing_note(summary),
             *_no_rows_note(metrics, opts.metric)]
    return Report(f"figure{number}", fig, table, notes, runs=run_scores(final, grid))


def run_scores(final: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Per-run final scores: env, rung, seed, steps (of the last evaluation), final_score,
    evals (how many were averaged), run_id; in the figure's order of cells, then by seed."""
    out = final.rename(columns={"score": "final_score", "step": "steps"})
    order = {cell: i for i, cell in enumerate(zip(grid["env"], grid["rung"], strict=True))}
    out = out.assign(_cell=[order.get(c, len(order)) for c in zip(out["env"], out["rung"],
                                                                   strict=True)])
    out = out.sort_values(["_cell", "seed"], kind="stable")
    return out[["env", "rung", "seed", "steps", "final_score", "evals", "run_id"]].reset_index(
        drop=True)


def latent_only_bars(source: RunSource, opts: ReportOptions) -> Report:
    """Figure 5: BLAST learning from latent prediction alone against BLAST, per MiniGrid variant."""
    runs = load_runs(source, opts, "minigrid")
    runs = runs[runs["rung"].isin(["ar_prior", "latent_only"])]
    if runs.empty:
        raise BlastError(f"experiment {opts.experiment!r} has no MiniGrid ar_prior or "
                         "latent_only runs (figure 5 compares them)")
    metrics = load_metrics(source, runs, [opts.metric])
    final = frames.final_scores(metrics, opts.metric, opts.last)
    grid = frames.cells(frames.order_envs(runs["env"]), ["ar_prior", "latent_only"])
    summary = frames.summarize_final(final, grid)
    rule = frames.final_rule_text(opts.last)
    labels = {"ar_prior": "BLAST (+AR)", "latent_only": "BLAST, latent prediction only"}
    fig, table = figures.bar_figure(
        summary, title="Figure 5: BLAST without reward gradients (latent prediction only)",
        ylabel=_ylabel("minigrid", opts.metric),
        caption=f"{opts.experiment} ({provenance(runs, metrics, opts.metric)}): {rule}",
        labels=labels,
    )
    notes = [rule, *_missing_note(summary), *_no_rows_note(metrics, opts.metric)]
    return Report("figure5", fig, table, notes)


def learning_curves(source: RunSource, opts: ReportOptions, fam: str, number: int) -> Report:
    """Figures 6 (MiniGrid) and 7 (DMC): evaluation score against env frames per task."""
    runs = load_runs(source, opts, fam)
    series = opts.series(runs)
    runs = runs[runs["rung"].isin(series)]
    metrics = load_metrics(source, runs, [opts.metric])
    width = opts.bin if opts.bin is not None else frames.auto_bin_width(metrics, opts.metric)
    curves = frames.bin_curves(metrics, opts.metric, width)
    rule = frames.bin_rule_text(width)
    envs = frames.order_envs(runs["env"])
    fig, table = figures.curve_figure(
        curves, envs, series, title=f"Figure {number}: {FAMILY_NAMES[fam]} training curves "
        f"({opts.metric})", ylabel=_ylabel(fam, opts.metric),
        caption=f"{opts.experiment} ({provenance(runs, metrics, opts.metric)}): {rule}",
    )
    return Report(f"figure{number}", fig, table, [rule, *_no_rows_note(metrics, opts.metric)])


def sample_observations(opts: ReportOptions) -> Report:
    """Figure 2: the five MiniGrid renderings, same layout and moves, one column each."""
    steps = (0, 3, 6)
    samples = gather.sample_observations(MINIGRID_IDS, seed=0, at=steps)
    note = (f"seed 0; rows: after {', '.join(map(str, steps))} steps of the action plan "
            f"{list(gather.PLAN)} (0 left, 1 right, 2 forward)")
    fig, table = figures.samples_figure(samples, note, [f"step {t}" for t in steps])
    table.insert(2, "step", [steps[i] for i in table["sample"]])
    fig.suptitle("Figure 2: observations of the MiniGrid variants", fontsize=11)
    return Report("figure2", fig, table, [note])


def _run_config(run: pd.Series) -> Any:
    """The run's resolved config: the store's copy, else the run folder's config.yaml."""
    if isinstance(run.get("config"), dict):
        return from_dict(run["config"], Config)
    path = Path(str(run["run_dir"])) / "config.yaml"
    return from_dict(yaml.safe_load(path.read_text()), Config) if path.exists() else None


PROBE_RUNGS = ("no_recon", "ar_prior")
"""Figure 8's rungs unless `--rungs` names others: the paper's −recon against BLAST."""


def _probe_panel(env: str, runs: pd.DataFrame, rungs: tuple[str, ...],
                 skipped: list[str]) -> dict[str, Any]:
    """One row of Figure 8: the true frame and each rung's reconstruction (None: no checkpoint)."""
    from blast_core.report import imagined  # torch and the agent: only Figure 8 needs them

    panel: dict[str, Any] = {"env": env, "truth": None, "seed": None}
    sequence = None
    for rung in rungs:
        panel[rung], panel[f"{rung}_run"] = None, ""
        for _, run in runs[(runs["env"] == env) & (runs["rung"] == rung)].sort_values(
                "seed").iterrows():
            found = imagined.latest_checkpoint(run["run_dir"])
            try:
                cfg = _run_config(run)
            except ConfigError as e:  # e.g. a key of a newer blast: this one cannot build it
                skipped.append(f"{run['run_id']} ({e})")
                continue
            if found is None or cfg is None:
                continue
            step, state = found
            if sequence is None:
                sequence = gather.probe_sequence(env, cfg.env)
                panel["seed"] = sequence["seed"]
            panel["truth"], panel[rung] = imagined.imagine(cfg, state, sequence)
            panel[f"{rung}_run"] = f"{run['run_id']}@{step}"
            break
    return panel


def probe_reconstructions(source: RunSource, opts: ReportOptions) -> Report:
    """Figure 8: each rung's decoder on the 10th imagined frame, per variant: −recon against
    BLAST, or the rungs `--rungs` names (DV2's decoder is the one its reconstruction trains)."""
    rungs = opts.rungs or PROBE_RUNGS
    runs = load_runs(source, opts, "minigrid")
    runs = runs[runs["rung"].isin(rungs)]
    if runs.empty:
        raise BlastError(f"experiment {opts.experiment!r} has no MiniGrid runs of "
                         f"{' or '.join(rungs)} (figure 8 compares their decoders)")
    skipped: list[str] = []
    panels = pd.DataFrame([_probe_panel(e, runs, rungs, skipped)
                           for e in frames.order_envs(runs["env"])])
    note = (f"each row: one env sequence under seeded random actions (seed in the CSV), "
            f"{gather.CONTEXT} frames filtered, then {gather.HORIZON} imagined with the same "
            f"actions; shown: imagined frame {gather.HORIZON}, decoded by the decoder (from "
            "−recon on, the stop-gradient probe) of each rung's lowest-seed run at its latest "
            "checkpoint; n/a: no checkpoint")
    fig, table = figures.recon_figure(panels, rungs, f"{opts.experiment}: {note}")
    fig.suptitle("Figure 8: decoded imagined frames", fontsize=11)
    table.insert(1, "seed", [panels.set_index("env").loc[e, "seed"] for e in table["env"]])
    gone = [f"{frames.env_label(e)}/{p}" for e, p, s in
            zip(table["env"], table["panel"], table["shown"], strict=True) if not s]
    return Report("figure8", fig, table, [note] + ([f"missing: {', '.join(gone)}"] if gone else [])
                  + [f"warning: skipped {s}: this blast cannot build its model" for s in skipped])


def ladder_statistics(source: RunSource, opts: ReportOptions) -> Report:
    """`--stats`: IQM with stratified-bootstrap CIs and P(improvement) per family."""
    if opts.reps < 1:
        raise BlastError(f"--reps must be >= 1, got {opts.reps}")
    runs = load_runs(source, opts, None)
    final = frames.final_scores(load_metrics(source, runs, [opts.metric]), opts.metric, opts.last)
    if final.empty:
        raise BlastError(f"experiment {opts.experiment!r} has no {opts.metric} rows yet")
    if opts.versus is not None and opts.versus not in set(final["rung"]):
        raise BlastError(f"--versus {opts.versus}: experiment {opts.experiment!r} has no final "
                         f"scores of that rung (it has {', '.join(sorted(set(final['rung'])))})")
    table = stats.ladder_stats(final, reps=opts.reps, per_env=opts.per_env, versus=opts.versus)
    rule = frames.final_rule_text(opts.last).split(";")[0]
    caption = (f"{opts.experiment}: {rule}; seeds are the runs, tasks the envs; stratified "
               f"bootstrap, {opts.reps} reps; ! = fewer than {stats.MIN_SEEDS} seeds or tasks "
               "missing")
    notes = [rule]  # each estimate's warning is in its row of the table, the CSV and the figure
    xlabels = {g: _ylabel(frames.family(g), opts.metric) for g in table["family"].unique()}
    return Report("stats", stats.stats_figure(table, caption, xlabels), table, notes)


def build(number: int | None, source: RunSource | None, opts: ReportOptions) -> Report:
    """The report of figure `number`, or the statistics when `number` is None.

    Figure 2 shows the environments themselves and reads no database (`source` may be None).
    """
    makers: dict[int, Callable[[], Report]] = {
        2: lambda: sample_observations(opts),
        3: lambda: ladder_bars(source, opts, "minigrid", 3),
        4: lambda: ladder_bars(source, opts, "dmc", 4),
        5: lambda: latent_only_bars(source, opts),
        6: lambda: learning_curves(source, opts, "minigrid", 6),
        7: lambda: learning_curves(source, opts, "dmc", 7),
        8: lambda: probe_reconstructions(source, opts),
    }
    if number is None:
        if opts.ylim is not None:
            raise BlastError("--ylim sets the score axis of figures 3-7, not of --stats")
        return ladder_statistics(source, opts)
    if number not in makers:
        raise BlastError(f"unknown figure {number}; valid: {', '.join(map(str, FIGURES))}")
    if opts.compare_settings and number in (2, 5, 8):
        raise BlastError("--compare-settings draws figures 3, 4, 6 and 7 and --stats, "
                         f"not figure {number}")
    if opts.ylim is not None and number in (2, 8):
        raise BlastError(f"--ylim sets the score axis of figures 3-7, not figure {number}")
    made = makers[number]()
    if opts.ylim is not None:
        _limit_scores(made, opts.ylim)
    return made


def _limit_scores(made: Report, ylim: tuple[float, float]) -> None:
    """Every panel's score axis to `ylim`; a note says what was cut from view."""
    low, high = ylim
    values = made.table["mean"].dropna() if "mean" in made.table else []
    for ax in made.figure.axes:
        if ax.axison:  # not a spare slot holding the legend
            ax.set_ylim(low, high)
    outside = sum(not low <= v <= high for v in values)
    made.notes.append(f"score axis limited to [{low:g}, {high:g}] (--ylim): {outside} drawn "
                      "value(s) outside it are off the view, not off the CSV")


# --- writing ------------------------------------------------------------------------------------


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(report: Report, out: Path) -> list[Path]:
    """Write `<name>.png`, `<name>.pdf` (when there is a figure) and `<name>.csv` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if report.figure is not None:
        for ext in ("png", "pdf"):
            path = out / f"{report.name}.{ext}"
            _replace(path, lambda p, ext=ext: report.figure.savefig(p, format=ext, dpi=150))
            paths.append(path)
    path = out / f"{report.name}.csv"
    _replace(path, lambda p: report.table.to_csv(p, index=False))
    paths.append(path)
    if report.runs is not None:
        path = out / f"{report.name}-runs.csv"
        _replace(path, lambda p: report.runs.to_csv(p, index=False))
        paths.append(path)
    return paths
