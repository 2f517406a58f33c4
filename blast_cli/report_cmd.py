"""`blast report`: the paper's figures and the ladder's statistics from the run database."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from blast_cli.options import Db, Experiment, Results, rung_list
from blast_core.errors import BlastError
from blast_core.report import LAST
from blast_core.store import connect, db_url, prepare_results_root, results_root


class FigureId(StrEnum):
    """The paper's figures that `blast report` draws."""

    f2 = "2"
    f3 = "3"
    f4 = "4"
    f5 = "5"
    f6 = "6"
    f7 = "7"
    f8 = "8"


FIGURE_HELP = (
    "2: sample MiniGrid observations; 3/4: final score per rung (MiniGrid/DMC); 5: latent only "
    "vs BLAST; 6/7: learning curves (MiniGrid/DMC); 8: probe reconstructions, −recon vs BLAST."
)


def _stats_table(table) -> Table:
    out = Table(title="IQM and P(improvement), stratified bootstrap 95% CI")
    for col in ("family", "", "estimate", "95% CI", "seeds", "tasks", "warning"):
        out.add_column(col, justify="right" if col in ("estimate", "seeds") else "left")
    for _, r in table.iterrows():
        out.add_row(r["family"], escape(r["label"]), f"{r['estimate']:.3g}",
                    f"[{r['ci_low']:.3g}, {r['ci_high']:.3g}]", str(r["seeds"]), r["tasks"],
                    f"[red]{r['warning']}[/red]" if r["warning"] else "")
    return out


def _ylim(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise BlastError(f"--ylim takes LOW,HIGH, e.g. -2,5; got {text!r}") from None
    if not low < high:
        raise BlastError(f"--ylim needs LOW < HIGH, got {text!r}")
    return low, high


def report(
    figure: Annotated[FigureId | None, typer.Option("--figure", "-f", help=FIGURE_HELP)] = None,
    stats: Annotated[bool, typer.Option("--stats", help="IQM + P(improvement) per rung.")] = False,
    experiment: Experiment = "default",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default <results>/reports/EXP).")
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help="Evaluation metric.")] = "eval_score",
    last: Annotated[
        int, typer.Option("--last", help="Final score = mean of each run's last K evaluations.")
    ] = LAST,
    bin_: Annotated[
        float | None,
        typer.Option("--bin", help="Curve bin width in env frames (default: auto)."),
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Only runs of this preset.")
    ] = None,
    settings: Annotated[
        str | None,
        typer.Option("--settings", help="Only runs made with these --steps/--set settings, as "
                     "the error lists them, e.g. 'steps=30000 rssm.stoch=8' ('' for none)."),
    ] = None,
    rungs: Annotated[
        list[str] | None,
        typer.Option("--rungs", help="Only these rungs, in drawing order, as run-ladder takes "
                     "them: --rungs dv2,bn or --rungs dv2 --rungs bn (default: the whole ladder)."),
    ] = None,
    compare_settings: Annotated[
        bool,
        typer.Option("--compare-settings", help="Draw runs made with other --steps/--set "
                     "settings as bars and curves of their own beside their rung's."),
    ] = False,
    done: Annotated[
        bool, typer.Option("--done", help="Only runs that finished (leave out the ones still "
                           "running, interrupted or failed).")
    ] = False,
    reps: Annotated[int, typer.Option("--reps", help="Bootstrap replications.")] = 2000,
    per_env: Annotated[
        bool, typer.Option("--per-env", help="--stats for each env on its own as well.")
    ] = False,
    versus: Annotated[
        str | None, typer.Option("--versus", help="--stats also gives P(rung > RUNG) for every "
                                 "other rung, e.g. --versus dv2.")
    ] = None,
    ylim: Annotated[
        str | None,
        typer.Option("--ylim", help="Score axis LOW,HIGH of figures 3-7, e.g. -2,5 (what falls "
                     "outside leaves the view, not the CSV)."),
    ] = None,
    results: Results = None,
    db: Db = None,
) -> None:
    """Draw a paper figure (PNG + PDF + CSV of the numbers drawn) or the ladder statistics."""
    from blast_core.report import build  # matplotlib and pandas: only when a report is drawn

    if (figure is None) == (not stats):
        raise BlastError("give exactly one of --figure N or --stats")
    opts = build.ReportOptions(experiment=experiment, metric=metric, last=last, bin=bin_,
                               preset=preset, settings=settings, reps=reps,
                               compare_settings=compare_settings, ylim=_ylim(ylim),
                               done_only=done, per_env=per_env, versus=versus,
                               rungs=rung_list(rungs) if rungs is not None else None)
    number = int(figure.value) if figure is not None else None
    folder = out if out is not None else results_root(results) / "reports" / experiment
    prepare_results_root(folder, create=False)  # writable: fail before drawing, not after
    if number == 2:  # the environments themselves: no database needed
        made = build.build(number, None, opts)
    else:
        with connect(db_url(db, results), existing=True) as store:
            made = build.build(number, store, opts)
    if stats:
        Console(width=160).print(_stats_table(made.table))
    for note in made.notes:
        typer.echo(note)
    for path in build.save(made, folder):
        typer.echo(f"wrote {path}")
