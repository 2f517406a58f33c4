"""`blast run` and `blast resume RUN [RUN ...]`: train one run, or continue runs, to the end.

Exit codes: 0 done, 1 failed (a non-finite loss, a full disk), 2 bad input, 3 interrupted by
SIGTERM, SIGINT or SIGUSR1 after writing a checkpoint, 70 a bug (its traceback; the run is
marked failed).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from blast_cli import options
from blast_core.run.sinks import check_backends
from blast_core.run.spec import Options, RunSpec, device_index, locate_run, say_stderr
from blast_core.store import check_destination, db_url, prepare_results_root

EXIT_CODES = {"done": 0, "failed": 1, "interrupted": 3}

class _Speed(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} steps/s" if task.speed else "- steps/s")


class RichProgress:
    """A rich progress bar: steps, steps/s, the last evaluation score and the ETA. On a
    terminal too narrow for the run's name beside them (80 columns) the name goes on a line of
    its own above the bar."""

    NUMBERS = 72
    """Columns the bar's numbers and a short bar need."""

    def __init__(self, label: str, total: int) -> None:
        console = Console(stderr=False)
        columns = [BarColumn(bar_width=None if console.width >= 100 else 16),
                   MofNCompleteColumn(), _Speed(), TextColumn("score {task.fields[score]}"),
                   TimeRemainingColumn()]
        if console.width >= len(label) + self.NUMBERS:
            columns.insert(0, TextColumn("[bold]{task.description}"))
        else:
            console.print(f"[bold]{label}[/bold]", overflow="fold")
        self.bar = Progress(*columns, console=console, transient=False)
        self.task = self.bar.add_task(label, total=total, score="-")
        self.bar.start()

    def update(self, step: int, score: float | None) -> None:
        fields = {} if score is None else {"score": f"{score:.2f}"}
        self.bar.update(self.task, completed=step, **fields)

    def close(self) -> None:
        self.bar.stop()


class PlainProgress:
    """Where stdout is not a terminal (a batch job, `| tee`): one plain line on stderr every
    `every` seconds (default 60, $BLAST_PROGRESS_SECONDS) with the step, speed, last score and
    ETA. A run shorter than that prints none."""

    WINDOW = 5
    """Lines the speed is measured over: long enough to smooth a busy minute, short enough that
    the random prefill's fast steps leave the ETA a few lines into training."""

    def __init__(self, label: str, total: int, every: float | None = None) -> None:
        self.label, self.total = label, total
        self.every = every if every is not None else float(
            os.environ.get("BLAST_PROGRESS_SECONDS", "60"))
        self.last = time.monotonic()
        self.marks: deque[tuple[float, int]] = deque(maxlen=self.WINDOW + 1)
        """(time, step) at the first update and at each line since."""
        self.score: float | None = None

    def update(self, step: int, score: float | None) -> None:
        now = time.monotonic()
        if not self.marks:
            self.marks.append((now, step))
        if score is not None:
            self.score = score
        if now - self.last < self.every:
            return
        self.last = now
        since, first = self.marks[0]
        self.marks.append((now, step))
        rate = (step - first) / max(now - since, 1e-9)
        eta = f"{(self.total - step) / rate / 60:.0f} min" if rate > 0 else "-"
        score_text = "-" if self.score is None else f"{self.score:.2f}"
        print(f"{time.strftime('%H:%M:%S')} {self.label}: step {step}/{self.total} "
              f"({100 * step / self.total:.0f}%), {rate:.1f} steps/s, score {score_text}, "
              f"eta {eta}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _process() -> ModuleType:
    from blast_core.run import process  # torch: only once a run starts, not for `blast --help`

    return process


def _options(device: str, deterministic: bool, threads: int | None, no_progress: bool,
             label: str, log: list[str] | None = None) -> Options:
    if no_progress:
        factory = None
    elif sys.stdout.isatty():
        factory = lambda total, step: RichProgress(label, total)  # noqa: E731
    else:
        factory = lambda total, step: PlainProgress(label, total)  # noqa: E731
    return Options(device=device, deterministic=deterministic, threads=threads,
                   progress=factory, log=check_backends(log or []),
                   **options.runtime_switches())


def run(
    env: options.Env,
    rung: options.Rung,
    seed: Annotated[int, typer.Option("--seed", help="The run's seed.")],
    preset: options.Preset = "paper",
    steps: Annotated[int | None, typer.Option("--steps", help="Agent steps of the run.")] = None,
    set_: options.Set = None,
    device: options.Device = "auto",
    deterministic: options.Deterministic = False,
    experiment: options.Experiment = "default",
    results: options.Results = None,
    db: options.Db = None,
    threads: options.Threads = None,
    no_progress: options.NoProgress = False,
    log: options.Log = None,
) -> None:
    """Train one run; running the same command again resumes it from its last checkpoint."""
    # Bad input is answered before torch is imported (seconds): the spec and the device's
    # spelling need no torch, whether that GPU exists does.
    spec = RunSpec.make(env, rung, seed, preset, set_, steps, experiment)
    device_index(device)
    process = _process()
    process.check_device(device)
    opts = _options(device, deterministic, threads, no_progress, spec.name, log)
    root, url = check_destination(db, results)
    status = process.start(spec, root, url, opts)
    typer.echo(f"{spec.run_id}: {status}")
    raise typer.Exit(EXIT_CODES[status])


def resume_ids(run_ids: list[str], *, device: str, deterministic: bool, results: str | None,
               db: str | None, threads: int | None, no_progress: bool,
               log: list[str] | None) -> None:
    """`blast resume RUN ...`: continue the runs here from their last checkpoints, one after
    another, with their stored configs (`blast_cli.ladder_cmd.resume` takes the options)."""
    check_backends(log or [])
    root = prepare_results_root(results, create=False)  # a run to resume is already there
    for run_id in run_ids:  # every id checked before torch is imported and anything trains
        locate_run(run_id, root, db_url(db, root), say_stderr)
    process = _process()
    worst = 0
    for run_id in run_ids:
        opts = _options(device, deterministic, threads, no_progress, run_id.split("/")[-1], log)
        status = process.resume(run_id, root, db_url(db, root), opts)
        typer.echo(f"{run_id}: {status}")
        worst = max(worst, EXIT_CODES[status])
        if status == "interrupted":
            break  # a stop signal stops the whole command, not just this run
    raise typer.Exit(worst)


def register(app: typer.Typer) -> None:
    """Add `run` to the top-level app."""
    app.command("run", no_args_is_help=True)(run)
