"""Options shared by several commands, declared once."""

from __future__ import annotations

import os
from typing import Annotated

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


Rungs = Annotated[
    list[str] | None,
    typer.Option("--rungs", help="Rungs, comma-separated or repeated (--rungs dv2,bn or "
                 "--rungs dv2 --rungs bn); default: the whole ladder."),
]


def rung_list(values: list[str]) -> tuple[str, ...]:
    """`--rungs dv2,bn` or `--rungs dv2 --rungs bn` -> ("dv2", "bn"): a repeated option must not
    keep only its last value. The names are checked where they are used."""
    names = tuple(r.strip() for text in values for r in text.split(",") if r.strip())
    if not names:
        raise BlastError("--rungs names no rung")
    return names


def runtime_switches() -> dict[str, bool]:
    """The `Runtime` switches that are environment variables, read here, once, for the library:
    `BLAST_GRAPH_BEHAVIOR=1` graphs the whole behaviour step on a GPU (opt-in),
    `BLAST_KEEP_FREED_MEMORY=0` leaves glibc's memory defaults."""
    return {"graph_behavior": os.environ.get("BLAST_GRAPH_BEHAVIOR", "0") == "1",
            "keep_freed_memory": os.environ.get("BLAST_KEEP_FREED_MEMORY", "1") != "0"}
