"""A plain option given twice is refused (click would keep the last value without a word)."""

from __future__ import annotations

import pytest
import typer.main

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
