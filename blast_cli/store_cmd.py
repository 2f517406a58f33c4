"""`blast export` and `blast import`: move an experiment's runs between databases and machines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from blast_cli.options import Db, Results
from blast_core import store as db_store
from blast_core.errors import BlastError
from blast_core.store import check_destination, connect, db_url


def export(
    experiment: Annotated[
        list[str], typer.Option("--experiment", help="Experiment to export (repeatable).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write (default <experiment>.blast.json.gz; "
                     "a name ending in .gz is compressed)."),
    ] = None,
    results: Results = None,
    db: Db = None,
) -> None:
    """Write experiments' runs, configs, commits and every metric row to one portable file."""
    if out is None:
        if len(experiment) > 1:
            raise BlastError("several experiments: name the file with --out")
        out = Path(f"{experiment[0].replace('/', '_')}.blast.json.gz")
    with connect(db_url(db, results), existing=True) as store:
        counts = db_store.portable.export(store, experiment, out)
    typer.echo(f"exported {counts['runs']} runs, {counts['metrics']} metric rows to {out}")


def import_(
    files: Annotated[list[Path], typer.Argument(help="Export files written by `blast export`.")],
    results: Results = None,
    db: Db = None,
) -> None:
    """Merge export files into this database; importing a file again adds nothing."""
    # Every file is checked before anything is written.
    docs = [db_store.portable.read(f) for f in files]
    with connect(check_destination(db, results)[1]) as store:
        for f, doc in zip(files, docs, strict=True):
            done = db_store.portable.import_file(store, f, doc)
            parts = [f"{len(done.added)} runs added"]
            if done.extended:
                parts.append(f"{len(done.extended)} extended by {done.rows} rows")
            parts.append(f"{len(done.unchanged)} already there")
            typer.echo(f"{f}: {', '.join(parts)}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_)
