"""Where results and the database live: option, then environment variable, then the default."""

from __future__ import annotations

import os
from pathlib import Path


def results_root(results: str | Path | None = None) -> Path:
    """`--results`, else $BLAST_RESULTS, else ./results."""
    return Path(results or os.environ.get("BLAST_RESULTS") or "results")


def db_url(db: str | None = None, results: str | Path | None = None) -> str:
    """`--db`, else $BLAST_DB, else SQLite at <results>/blast.db (an absolute path)."""
    url = db or os.environ.get("BLAST_DB")
    if url:
        return url
    return f"sqlite:///{results_root(results).resolve() / 'blast.db'}"
