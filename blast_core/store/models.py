"""The run database's tables (SQLAlchemy 2 declarative models).

The schema is owned by the Alembic migrations in `migrations/versions/`; these models describe the
head revision and must change together with a new migration.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer, "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")



class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    __tablename__ = "experiments"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    recipe: Mapped[str | None] = mapped_column(Text)
    """The recipe's YAML text when the experiment came from `blast run-recipe`."""
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(400), primary_key=True)
    """`<experiment>/<run name>`."""
    experiment: Mapped[str] = mapped_column(ForeignKey("experiments.name"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    env: Mapped[str] = mapped_column(String(100))
    rung: Mapped[str] = mapped_column(String(50))
    seed: Mapped[int] = mapped_column(Integer)
    preset: Mapped[str] = mapped_column(String(50))
    config: Mapped[dict | None] = mapped_column(Json)
    """The resolved config (`config.tree.to_dict`)."""
    overrides: Mapped[dict | None] = mapped_column(Json)
    """The `--set` overrides as given, so a run can be relaunched with its own command."""
    steps: Mapped[int | None] = mapped_column(BigInteger)
    """`--steps` as given (None: the preset's)."""
    run_dir: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    device: Mapped[str | None] = mapped_column(String(50))
    host: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    launches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Processes a scheduler started for this run (retries included); `blast run` by hand: 0."""
    slurm_job: Mapped[str | None] = mapped_column(String(64))
    """The SLURM job that last ran it (`<array job>_<task>`, as squeue shows it); None off SLURM."""


class Metric(Base):
    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(BigInteger)
    frames: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)
    """NULL for a non-finite value (SQLite cannot store NaN, so neither backend does)."""
    # Reports read one metric of many runs; the scheduler reads the latest step of each.
    __table_args__ = (Index("ix_metrics_run_name_step", "run_id", "name", "step"),)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
