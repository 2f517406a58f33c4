"""`blast status` and `blast ls`: the state of experiments, read from the store, as rich tables."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from blast_cli.live import STYLE, counts_line, left_line, time_left
from blast_core.config import RUNG_IDS
from blast_core.errors import BlastError
from blast_core.scheduling import eta
from blast_core.scheduling.crash import mark_crashed
from blast_core.store import STATUSES

if TYPE_CHECKING:
    from blast_core.store import Store

SCORE = "eval_score"
SPEED = eta.SPEED


def row_label(run: dict[str, Any]) -> str:
    """The run's name without its rung: the row of the matrix it belongs to."""
    return run["name"].replace(f"__{run['rung']}__", "__", 1)


def _cell(run: dict[str, Any], metrics: dict[str, float]) -> Text:
    state, score = run["status"], metrics.get(SCORE)
    text = Text(state, style=STYLE[state])
    total = ((run.get("config") or {}).get("schedule") or {}).get("steps")
    if state in ("running", "interrupted", "crashed", "failed") and total:
        text.append(f" {100 * run['step'] / total:.0f}%")
    if score is not None:
        text.append(f" {score:.2f}", style="bold")
    left = time_left(run, metrics.get(SPEED))
    if left:
        text.append(f" ~{left} left", style="dim")
    return text


def matrix(runs: list[dict[str, Any]], latest: dict[str, dict]) -> Table:
    """(env, preset, seed) x rung: each run's state, progress, last evaluation score and, while
    it runs, the time it has left.

    A row is a run's name without its rung (env__preset__s<seed>[__<options hash>])."""
    rungs = [r for r in RUNG_IDS if any(run["rung"] == r for run in runs)]
    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("run", no_wrap=True)
    for rung in rungs:
        table.add_column(rung, no_wrap=True)
    cells: dict[str, dict[str, Text]] = {}
    for run in runs:
        cells.setdefault(row_label(run), {})[run["rung"]] = _cell(run, latest.get(run["id"], {}))
    for label in sorted(cells, key=_row_order):
        table.add_row(label, *(cells[label].get(r, Text("-", style="dim")) for r in rungs))
    return table


def _parts(label: str) -> tuple[str, int, str]:
    """A row label's env__preset, seed number and options hash ("" without one)."""
    head, _, tail = label.rpartition("__s")
    digits, _, options = tail.partition("__")
    return head, int(digits) if digits.isdigit() else 0, options


def _row_order(label: str) -> tuple[str, str, int]:
    """Rows by env and preset, then options, then seed number (s10 after s9)."""
    head, seed, options = _parts(label)
    return head, options, seed


def options_legend(runs: list[dict[str, Any]]) -> Text | None:
    """What each options hash in the row names stands for, as the run's --steps and --set
    options (None when no run has any). Options every hash shares come first, on an `all` line."""
    legend: dict[str, list[str]] = {}
    for run in runs:
        options = _parts(row_label(run))[2]
        if options and options not in legend:
            steps = [f"--steps {run['steps']}"] if run.get("steps") is not None else []
            sets = [f"--set {k}={v}" for k, v in sorted((run.get("overrides") or {}).items())]
            legend[options] = steps + sets
    if not legend:
        return None
    common = [part for part in next(iter(legend.values()))
              if len(legend) > 1 and all(part in parts for parts in legend.values())]
    text = Text("options: ", style="bold")
    if common:
        text.append(f"\n  {'all':{len(next(iter(legend)))}}  ", style="bold")
        text.append(" ".join(common))
    for options, parts in sorted(legend.items()):
        rest = [part for part in parts if part not in common]
        text.append(f"\n  {options}  ", style="bold").append(" ".join(rest) or "-")
    return text


def failure_lines(runs: list[dict[str, Any]], width: int = 160) -> Text | None:
    """Why each failed or crashed run stopped (the first line of its stored error), one line
    per run; None when no run failed."""
    lines = [(run["name"], run["status"], (run.get("error") or "no reason recorded").strip())
             for run in runs if run["status"] in ("failed", "crashed")]
    if not lines:
        return None
    text = Text("why: ", style="bold")
    for name, state, error in lines:
        first = (error.splitlines() or [""])[0].removeprefix(f"{state}: ")
        shown = first if len(first) <= width else first[:width - 1] + "…"
        text.append(f"\n  {name}  ").append(state, style=STYLE[state]).append(f": {shown}")
    return text


def slurm_lines(runs: list[dict[str, Any]]) -> Text | None:
    """The SLURM job that last ran each run, one line per job (None when no run went to SLURM):
    what to give squeue, sacct or scancel."""
    jobs: dict[str, list[str]] = {}
    for run in runs:
        if run.get("slurm_job"):
            jobs.setdefault(run["slurm_job"], []).append(run["name"])
    if not jobs:
        return None
    text = Text("slurm jobs: ", style="bold")
    for job, names in sorted(jobs.items(), key=lambda kv: _job_order(kv[0])):
        text.append(f"\n  {job}  ").append(" ".join(names))
    return text


def _job_order(job: str) -> tuple[int, int]:
    head, _, task = job.partition("_")
    return (int(head) if head.isdigit() else 0, int(task) if task.isdigit() else 0)


def status_tables(store: Store, experiment: str | None = None) -> list[tuple[str, Table, Text]]:
    """(experiment, its matrix, its counts line, the options legend, why runs failed and their
    SLURM jobs) for one or every experiment."""
    names = [e["name"] for e in store.experiments()]
    if experiment is not None and experiment not in names:
        raise BlastError(f"unknown experiment {experiment!r}; known: {', '.join(names) or 'none'}")
    out = []
    for name in [experiment] if experiment else names:
        runs = store.runs(name)
        if runs:
            latest = eta.steady(runs, store.latest_metrics([SCORE, SPEED], experiment=name),
                                store.recent_metric(SPEED, eta.RECENT, experiment=name))
            totals = store.metric_totals(eta.TIME_METRICS, experiment=name)
            parts = [counts_line(runs), left_line(eta.estimate(runs, totals, latest)),
                     options_legend(runs), failure_lines(runs), slurm_lines(runs)]
            out.append((name, matrix(runs, latest),
                        Text("\n").join([p for p in parts if p is not None])))
    return out


def render(store: Store, experiment: str | None, stale_after: float) -> tuple[Group, bool]:
    """The status tables of one or every experiment, and whether any of their runs is still
    queued or running (after marking dead ones crashed)."""
    mark_crashed(store, experiment, stale_after)
    parts: list[Any] = []
    for name, table, counts in status_tables(store, experiment):
        legend = f"(cells: state, progress, last {SCORE}, time left)"
        parts += [Text.from_markup(f"[bold]{name}[/]  {legend}"), table, counts]
    if not parts:
        parts = [Text("no runs yet: start some with blast run-ladder or blast run-recipe")]
    active = any(r["status"] in ("queued", "running") for r in store.runs(experiment))
    return Group(*parts), active


def watch(store: Store, experiment: str | None, every: float, console: Console,
          stale_after: float) -> None:
    """Redraw the status every `every` seconds until no run is queued or running (or Ctrl-C).
    On a terminal the tables are redrawn in place; into a file or pipe they are printed again,
    under a timestamp, only when they changed."""
    if every <= 0:
        raise BlastError(f"--watch takes seconds > 0, got {every}")
    view, active = render(store, experiment, stale_after)
    if console.is_terminal:
        with Live(view, console=console, auto_refresh=False) as live:
            while active:
                time.sleep(every)
                view, active = render(store, experiment, stale_after)
                live.update(view, refresh=True)
        return
    last = None
    while True:
        with console.capture() as capture:
            console.print(view)
        if capture.get() != last:
            last = capture.get()
            console.print(f"--- {time.strftime('%H:%M:%S')}", style="dim")
            console.print(view, soft_wrap=True)
        if not active:
            return
        time.sleep(every)
        view, active = render(store, experiment, stale_after)


def experiments_table(store: Store) -> Table:
    """One line per experiment: its runs by state."""
    table = Table(header_style="bold", box=None, pad_edge=False)
    for name in ("experiment", "runs", "states", "created"):
        table.add_column(name, justify="right" if name == "runs" else "left")
    for exp in store.experiments():
        counts = exp["counts"]
        states = Text()
        for state in STATUSES:
            if counts.get(state):
                states.append(f"{counts[state]} {state}  ", style=STYLE[state])
        table.add_row(exp["name"], str(sum(counts.values())), states,
                      exp["created"].strftime("%Y-%m-%d %H:%M"))
    return table
