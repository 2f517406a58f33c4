"""The run database: experiments, runs, metrics and checkpoints (SQLite or PostgreSQL).

    from blast_core.store import connect
    store = connect("sqlite:///results/blast.db")

`locate` resolves the results folder and database URL from options and the environment; `states`
names the states a run can be in. Both are light; `Store` (the tables, SQLAlchemy and Alembic,
about 0.4 s to import) loads on first use, so that a command's help or a bad flag answers at once
and the scheduler can import this package at the top of its files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from blast_core.store.locate import (
    check_destination,
    db_url,
    prepare_results_root,
    results_root,
)
from blast_core.store.states import ACTIVE, RESUMABLE, STATUSES

if TYPE_CHECKING:
    from blast_core.store import portable
    from blast_core.store.engine import StoreError
    from blast_core.store.store import FRAME_COLUMNS, Store

_LAZY = {"Store": "store", "FRAME_COLUMNS": "store", "StoreError": "engine",
         "portable": None}
"""Names loaded on first access (PEP 562) -> their submodule (None: the submodule itself)."""


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name] or name}")
    return module if _LAZY[name] is None else getattr(module, name)


def connect(url: str, *, existing: bool = False) -> Store:
    """The database at `url`: created or upgraded in place (`Store.open`), or, with `existing`,
    one that must already be there (`Store.open_existing`: the commands that read runs)."""
    store_class = __getattr__("Store")
    return store_class.open_existing(url) if existing else store_class.open(url)


__all__ = [
    "ACTIVE",
    "FRAME_COLUMNS",
    "RESUMABLE",
    "STATUSES",
    "Store",
    "StoreError",
    "check_destination",
    "connect",
    "db_url",
    "portable",
    "prepare_results_root",
    "results_root",
]
