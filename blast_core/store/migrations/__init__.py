"""Alembic migrations of the run database, applied by `Store.open` (see `env.py`)."""
