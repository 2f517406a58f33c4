"""`blast`: the command-line entry point. Each command parses its options and calls blast_core."""

from __future__ import annotations

import sys

import typer

from blast_cli import bench_cmd, config_cmd, envs_cmd, ladder_cmd, report_cmd, run_cmd
from blast_core.errors import BlastError

app = typer.Typer(
    name="blast",
    help="Run, resume and report the BLAST ablation ladder (DreamerV2 -> BLAST).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(envs_cmd.app, name="envs")
app.command("bench")(bench_cmd.bench)
run_cmd.register(app)
ladder_cmd.register(app)
app.command("report")(report_cmd.report)


def main() -> None:
    """Console entry point: click reports usage errors itself; blast's user errors become one
    line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except BlastError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
