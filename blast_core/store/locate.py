"""Where results and the database live: option, then environment variable, then the default."""

from __future__ import annotations

import os
from pathlib import Path

from blast_core.errors import BlastError


def results_root(results: str | Path | None = None) -> Path:
    """`--results`, else $BLAST_RESULTS, else ./results."""
    return Path(results or os.environ.get("BLAST_RESULTS") or "results")


def db_url(db: str | None = None, results: str | Path | None = None) -> str:
    """`--db`, else $BLAST_DB, else SQLite at <results>/blast.db (an absolute path)."""
    url = db or os.environ.get("BLAST_DB")
    if url:
        return url
    return f"sqlite:///{results_root(results).resolve() / 'blast.db'}"


def prepare_results_root(results: str | Path | None = None, create: bool = True) -> Path:
    """The results root of a command that writes there: a one-line BlastError, before anything
    is written, when it is a file or cannot be written; created (with its parents) if missing
    and `create`."""
    root = results_root(results)
    if root.exists() and not root.is_dir():
        raise BlastError(f"the results root {root} is a file, not a folder (--results)")
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BlastError(f"the results root {root} cannot be written"
                         + ("" if existing == root else f" ({existing} is read-only)"))
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def check_destination(db: str | None, results: str | Path | None) -> tuple[Path, str]:
    """(results root, database URL) of a command that writes runs, both checked before it
    writes anything: the root as in `prepare_results_root`, and the database opened once (and
    created, with the schema). The root is created only when the database lives in it, and no
    other folder is: a mistyped `--db` leaves nothing behind."""
    # Here, not at the top: the rest of this module is read by commands that never open a
    # database, and SQLAlchemy takes ~0.4 s to import.
    from blast_core.store.store import Store, StoreError, parse_url

    root = prepare_results_root(results, create=False)
    url = db_url(db, root)
    if db or os.environ.get("BLAST_DB"):
        path = parse_url(url).database if url.startswith("sqlite") else None
        folder = Path(path).expanduser().parent if path and path != ":memory:" else None
        inside = folder is not None and (
            folder.resolve() == root.resolve() or root.resolve() in folder.resolve().parents)
        if inside:
            root.mkdir(parents=True, exist_ok=True)
        elif folder is not None and not folder.is_dir():
            # Store.open would create it: a mistyped --db must not leave folders behind.
            raise StoreError(f"cannot open the database {path}: the folder {folder} does "
                             "not exist")
    else:
        root.mkdir(parents=True, exist_ok=True)
    Store.open(url).close()
    return root, url
