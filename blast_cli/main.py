"""`blast`: the command-line entry point. Each command parses its options and calls blast_core.

A command imports only what it needs: `blast run` starts a training process (many of them in a
ladder), so it must not pay for the report's plotting stack or the scheduler. The full app, with
every command, is built for `blast --help` and for tests (`blast_cli.main.app`).
"""

from __future__ import annotations

import importlib
import sys
import traceback

import typer

from blast_cli.argv import repeated_option
from blast_core.errors import BlastError

# Command-line words -> the modules that define them, in the order `blast --help` lists them.
_MODULES = ("run_cmd", "ladder_cmd", "report_cmd", "store_cmd", "bench_cmd", "config_cmd",
            "envs_cmd")
_NEEDS = {
    "run": ("run_cmd",),
    **{word: ("run_cmd", "ladder_cmd")
       for word in ("run-ladder", "run-recipe", "status", "ls", "cancel", "resume")},
    "report": ("report_cmd",),
    "export": ("store_cmd",),
    "import": ("store_cmd",),
    "bench": ("bench_cmd",),
    "config": ("config_cmd",),
    "envs": ("envs_cmd",),
}


# `blast --help` lists the commands with these lines instead of importing every command's module
# (the library's config, scheduler and store: about half of its time). tests/test_cli_args.py
# checks that the listing is the one the full app prints.
_OVERVIEW = {
    "run": "Train one run; running the same command again resumes it from its last checkpoint.",
    "run-ladder": "Run the grid env x rung x seed; done runs are skipped, unfinished ones "
                  "resumed.",
    "run-recipe": "Run every run a recipe names (checked in full before anything is written).",
    "status": "The env x rung x seed matrix of each experiment: states, progress and last "
              "scores.",
    "ls": "Every experiment and its runs by state.",
    "cancel": "Cancel runs: running ones here are stopped at a checkpoint first.",
    "resume": "Continue runs from their last checkpoints (named ones here; --all through the "
              "scheduler).",
    "report": "Draw a paper figure (PNG + PDF + CSV of the numbers drawn) or the ladder "
              "statistics.",
    "export": "Write experiments' runs, configs, commits and every metric row to one portable "
              "file.",
    "import": "Merge export files into this database; importing a file again adds nothing.",
    "bench": "Measure one update per rung (--models), environment steps/s (--envs), or one "
             "whole run\nand where its time goes (--run).",
    "config": "Show resolved configs and the differences between rungs.",
    "envs": "List the environments and draw sample observations.",
}


def overview_app() -> typer.Typer:
    """The app `blast` and `blast --help` show: every command's name and first line only."""
    app = build_app(())
    for name, summary in _OVERVIEW.items():
        app.command(name, help=summary)(lambda: None)
    return app


def _register(app: typer.Typer, module: str) -> None:
    mod = importlib.import_module(f"blast_cli.{module}")
    if module in ("config_cmd", "envs_cmd"):
        app.add_typer(mod.app, name=module.removesuffix("_cmd"))
    elif module in ("report_cmd", "bench_cmd"):
        name = module.removesuffix("_cmd")
        app.command(name)(getattr(mod, name))
    else:
        mod.register(app)


def build_app(modules: tuple[str, ...] = _MODULES) -> typer.Typer:
    app = typer.Typer(
        name="blast",
        help="Run, resume and report the BLAST ablation ladder (DreamerV2 -> BLAST).",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root() -> None:
        """Run, resume and report the BLAST ablation ladder (DreamerV2 -> BLAST)."""

    for module in modules:
        _register(app, module)
    return app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main() -> None:
    """Console entry point: click reports usage errors itself; blast's user errors, a plain
    option given twice among them, become one line on stderr and exit code 2, never a
    traceback; anything else is a bug: its traceback, a request to report it, exit code 70."""
    word = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    app = overview_app() if word is None else build_app(_NEEDS.get(word, _MODULES))
    if "--help" not in sys.argv:
        problem = repeated_option(typer.main.get_command(app), sys.argv[1:])
        if problem:
            typer.echo(f"error: {problem}", err=True)
            sys.exit(2)
    try:
        app()
    except BlastError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Exception:
        # Not an expected failure: a bug. Its traceback is what a report needs.
        traceback.print_exc()
        typer.echo("this is a bug in blast: please report it with the traceback above and the "
                   "command that gave it", err=True)
        sys.exit(70)  # EX_SOFTWARE
