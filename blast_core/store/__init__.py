"""The run database: experiments, runs, metrics and checkpoints (SQLite or PostgreSQL).

    from blast_core.store import Store
    store = Store.open("sqlite:///results/blast.db")

`locate` resolves the results folder and database URL from options and the environment.
"""

from blast_core.store.engine import StoreError
from blast_core.store.locate import (
    check_destination,
    db_url,
    prepare_results_root,
    results_root,
)
from blast_core.store.models import ACTIVE, RESUMABLE, STATUSES
from blast_core.store.store import FRAME_COLUMNS, Store

__all__ = [
    "ACTIVE",
    "FRAME_COLUMNS",
    "RESUMABLE",
    "STATUSES",
    "Store",
    "StoreError",
    "check_destination",
    "db_url",
    "prepare_results_root",
    "results_root",
]
