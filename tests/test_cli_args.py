"""A plain option given twice is refused (click would keep the last value without a word)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from blast_cli import options
from blast_cli.argv import repeated_option
from blast_cli.main import build_app

BLAST = typer.main.get_command(build_app())


@pytest.mark.parametrize("args, problem", [
    ("run --env a --rung bn --env b", "--env is given twice (a, then b); it takes one value"),
    ("run -e a --env=b", "-e is given twice (a, then b)"),
    ("run -ea -e b", "-e is given twice (a, then b)"),
    ("config show --rung bn --rung dv2", "--rung is given twice (bn, then dv2)"),
    ("status --watch 2 --experiment x --watch 5", "--watch is given twice (2, then 5)"),
    # repeatable options, flags, values that look like options, and what follows `--` pass
    ("run --set a=1 -s b=2 --env x", None),
    ("run-ladder --env a --env b --rungs dv2 --rungs bn --seeds 2", None),
    ("bench --rung bn --rung dv2", None),
    ("run --experiment --env --env x", None),
    ("run --deterministic --deterministic --env x", None),
    ("run --env a -- --env b", None),
    ("no-such-command --x 1 --x 2", None),
])
def test_a_plain_option_given_twice_is_named(args: str, problem: str | None) -> None:
    found = repeated_option(BLAST, args.split())
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


HEAVY = ("torch", "sqlalchemy", "alembic", "pandas", "matplotlib")
"""Libraries a help text or a usage error must not wait for (each takes tenths of a second)."""


def heavy_imports(args: list[str]) -> tuple[subprocess.CompletedProcess, str]:
    """Run `blast ARGS` in a fresh interpreter; what it did, and the HEAVY libraries it had
    imported by its end."""
    probe = ("import sys; from blast_cli.main import main; sys.argv = ['blast', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             f"print('imported:', *sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          timeout=60)
    return done, done.stdout.splitlines()[-1]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["status", "--help"],
                                  ["report", "--help"], ["export", "--help"],
                                  ["run", "--no-such-flag"]])
def test_help_and_usage_errors_import_no_heavy_library(args: list[str]) -> None:
    """`blast --help` once took 1.2 s, most of it SQLAlchemy pulled in by the store's package."""
    done, imported = heavy_imports(args)
    assert imported == "imported:", done.stdout
    assert "Usage" in done.stdout + done.stderr


@pytest.mark.parametrize("args, message", [
    (["--rung", "nope"], "unknown rung 'nope'"),
    (["--rung", "dv2", "--set", "rssm.nope=1"], "rssm.nope"),
    (["--rung", "dv2", "--device", "tpu"], "use auto, cpu or cuda:K"),
    (["--rung", "dv2", "--steps", "0"], "--steps must be positive"),
])
def test_a_bad_run_is_refused_before_torch_is_imported(args: list[str], message: str,
                                                       tmp_path) -> None:
    """`blast run` with a bad rung, key, device or step count once took 4-7 s to say so: it
    imported torch (and the database) first."""
    done, imported = heavy_imports(["run", "--env", "minigrid:unmodified", "--seed", "0",
                                    "--results", str(tmp_path / "r"), *args])
    assert imported == "imported:", done.stdout
    assert done.stderr.startswith("error:") and message in done.stderr, done.stderr
    assert not (tmp_path / "r").exists()


def test_an_unexpected_exception_is_a_bug_report_not_a_user_error(monkeypatch, capsys) -> None:
    """Expected failures are one `error:` line (exit 2); anything else is a bug: its traceback,
    a request to report it, exit code 70. The app here is a real Typer app whose one command
    fails the way a bug does."""
    import blast_cli.main as entry

    broken = typer.Typer()

    @broken.command()
    def boom() -> None:
        raise ZeroDivisionError("a bug")

    @broken.command()
    def other() -> None:
        pass

    monkeypatch.setattr(entry, "build_app", lambda modules=(): broken)
    monkeypatch.setattr(sys, "argv", ["blast", "boom"])
    with pytest.raises(SystemExit) as ended:
        entry.main()
    err = capsys.readouterr().err
    assert ended.value.code == 70
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert err.rstrip().endswith("with the traceback above and the command that gave it")


def test_a_run_spec_is_plain_data_without_torch() -> None:
    """The scheduler and the CLI import specs at the top of their files: a spec must not drag
    in torch, the environments' gymnasium or the database's SQLAlchemy."""
    probe = ("import sys, blast_core.run.spec, blast_core.scheduling\n"
             f"print(*sorted(m for m in {HEAVY!r} + ('gymnasium',) if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_the_overview_lists_what_the_full_app_lists() -> None:
    """`blast --help` is drawn from a list of the commands' first lines, not from their modules:
    it must print exactly what the full app prints."""
    from typer.testing import CliRunner

    from blast_cli.main import overview_app

    runner = CliRunner()
    full = runner.invoke(build_app(), ["--help"], env={"COLUMNS": "100"})
    quick = runner.invoke(overview_app(), ["--help"], env={"COLUMNS": "100"})
    assert full.exit_code == quick.exit_code == 0
    assert quick.output == full.output and "run-ladder" in quick.output


def test_an_option_group_is_declared_once_and_reaches_the_command_gathered() -> None:
    def where(results: options.Results = None, threads: options.Threads = None) -> dict:
        """Where it runs: two options."""
        return {"results": results, "threads": threads}

    app = typer.Typer()

    @app.command()
    @options.with_groups(where)
    def cmd(name: str = "x", where: dict | None = None) -> None:
        typer.echo(f"{name} {where}")

    runner = CliRunner()
    out = runner.invoke(app, ["--name", "y", "--threads", "2"])
    assert out.exit_code == 0 and out.stdout.strip() == "y {'results': None, 'threads': 2}"
    assert runner.invoke(app, ["--threads", "0"]).exit_code == 2  # the shared check, min=1
    assert "Where it runs" in runner.invoke(app, ["--help"]).stdout  # its own help panel
    with pytest.raises(TypeError, match="declared twice"):
        options.with_groups(where)(lambda threads=None, where=None: None)
    with pytest.raises(TypeError, match="not taken"):
        options.with_groups(where)(lambda name="x": None)


def test_resuming_a_run_that_is_not_there_is_refused_before_torch_is_imported(tmp_path) -> None:
    """`blast resume` checks every id it is given (a folder here, or a run the database knows)
    before it imports torch and trains any of them."""
    done, imported = heavy_imports(["resume", "default/nope", "--results", str(tmp_path)])
    assert "torch" not in imported.split(), done.stdout
    assert done.stderr.startswith("error: no run 'default/nope'"), done.stderr
