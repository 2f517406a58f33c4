"""Options shared by several commands, declared once; `with_groups` shares a whole group."""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args

import typer

from blast_core.errors import BlastError

Env = Annotated[str, typer.Option("--env", "-e", help="minigrid:VARIANT or dmc:DOMAIN_TASK.")]
Rung = Annotated[
    str,
    typer.Option(
        "--rung", "-r", help="dv2, no_recon, stop_grad, target, bn, ar_prior or latent_only."
    ),
]
Preset = Annotated[str, typer.Option("--preset", "-p", help="paper, cpu or tiny.")]
Set = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set rssm.stoch=8 (repeatable)."),
]


Experiment = Annotated[str, typer.Option("--experiment", help="Experiment name.")]
OneExperiment = Annotated[
    str | None, typer.Option("--experiment", help="Only the runs of this experiment.")
]
Results = Annotated[
    str | None,
    typer.Option("--results", help="Results root (default $BLAST_RESULTS or ./results)."),
]
Db = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default $BLAST_DB or sqlite:///<results>/blast.db)."),
]
Device = Annotated[
    str, typer.Option("--device", help="auto (a GPU when torch sees one, else cpu), cpu or cuda:K.")
]
Deterministic = Annotated[
    bool,
    typer.Option("--deterministic", help="One thread, torch's deterministic algorithms."),
]
Threads = Annotated[int | None, typer.Option("--threads", help="Torch CPU threads.", min=1)]
NoProgress = Annotated[bool, typer.Option(
    "--no-progress", help="No live progress (the bar of one run, the table of many): plain lines.")]
Log = Annotated[list[str] | None, typer.Option(
    "--log", help="Also send every metric row to tensorboard or wandb (repeatable; a resumed "
    "run keeps its own).")]

Rungs = Annotated[
    list[str] | None,
    typer.Option("--rungs", help="Rungs, comma-separated or repeated (--rungs dv2,bn or "
                 "--rungs dv2 --rungs bn); default: the whole ladder."),
]


def _items(values: list[str]) -> tuple[str, ...]:
    """A list option's items, comma-separated or repeated: a repeated option must not keep only
    its last value."""
    return tuple(item.strip() for text in values for item in text.split(",") if item.strip())


def rung_list(values: list[str]) -> tuple[str, ...]:
    """`--rungs dv2,bn` or `--rungs dv2 --rungs bn` -> ("dv2", "bn"). The names are checked
    where they are used."""
    names = _items(values)
    if not names:
        raise BlastError("--rungs names no rung")
    return names


def seed_list(values: list[str]) -> tuple[int, ...]:
    """`--seed 0,2` or `--seed 0 --seed 2` -> (0, 2)."""
    texts = _items(values)
    if not texts or not all(t.isdigit() for t in texts):
        raise BlastError(f"--seed takes seeds >= 0 (--seed 0,2), got {', '.join(values)!r}")
    return tuple(int(t) for t in texts)


def runtime_switches() -> dict[str, bool]:
    """The `Runtime` switches that are environment variables, read here, once, for the library:
    `BLAST_GRAPH_BEHAVIOR=1` graphs the whole behaviour step on a GPU (opt-in),
    `BLAST_KEEP_FREED_MEMORY=0` leaves glibc's memory defaults."""
    return {"graph_behavior": os.environ.get("BLAST_GRAPH_BEHAVIOR", "0") == "1",
            "keep_freed_memory": os.environ.get("BLAST_KEEP_FREED_MEMORY", "1") != "0"}


Command = TypeVar("Command", bound=Callable[..., Any])


def with_groups(*groups: Callable[..., Any]) -> Callable[[Command], Command]:
    """Give a command the options of each group, declared once as the group's parameters.

    A group is a function whose parameters are options; the command declares a parameter of the
    group's name instead of them and receives what the group returns (the options checked and
    gathered). Typer sees the command's own options, then each group's."""

    def wrap(command: Command) -> Command:
        own = inspect.signature(command, eval_str=True).parameters
        shared = {g.__name__: inspect.signature(g, eval_str=True).parameters for g in groups}
        names = [n for params in shared.values() for n in params]
        clash = (set(own) & set(names)) | {n for n in names if names.count(n) > 1}
        missing = set(shared) - set(own)
        if clash or missing:  # a mistake in this package, caught at import
            raise TypeError(f"{command.__name__}: options {clash} declared twice or groups "
                            f"{missing} not taken")

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            for group in groups:
                taken = shared[group.__name__]
                kwargs[group.__name__] = group(**{n: kwargs.pop(n) for n in taken})
            return command(**kwargs)

        params = [p for n, p in own.items() if n not in shared]
        params += [_in_panel(p, _panel(g)) for g in groups for p in shared[g.__name__].values()]
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return wrap


def _panel(group: Callable[..., Any]) -> str:
    """The help panel of a group's options: its docstring up to the colon."""
    return (group.__doc__ or group.__name__).split(":")[0].strip()


def _in_panel(param: inspect.Parameter, panel: str) -> inspect.Parameter:
    """The parameter with its option shown under `panel` in --help (a copy: the shared
    declaration is left as it is for the commands that take it alone)."""
    base, *infos = get_args(param.annotation)
    infos = [copy.copy(i) for i in infos]
    for info in infos:
        info.rich_help_panel = panel
    return param.replace(annotation=Annotated[(base, *infos)])
