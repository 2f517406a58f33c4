"""The first schema: experiments, runs, metrics, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("recipe", sa.Text()),
        sa.Column("created", Stamp, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(400), primary_key=True),
        sa.Column("experiment", sa.String(200), sa.ForeignKey("experiments.name"), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("env", sa.String(100), nullable=False),
        sa.Column("rung", sa.String(50), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("preset", sa.String(50), nullable=False),
        sa.Column("config", Json),
        sa.Column("overrides", Json),
        sa.Column("steps", sa.BigInteger()),
        sa.Column("run_dir", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("device", sa.String(50)),
        sa.Column("host", sa.String(200)),
        sa.Column("pid", sa.Integer()),
        sa.Column("heartbeat", Stamp),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean()),
        sa.Column("created", Stamp, nullable=False),
        sa.Column("started", Stamp),
        sa.Column("ended", Stamp),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_runs_experiment", "runs", ["experiment"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "metrics",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.String(400), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("frames", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float()),
    )
    op.create_index("ix_metrics_run_name_step", "metrics", ["run_id", "name", "step"])
    op.create_table(
        "checkpoints",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.String(400), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created", Stamp, nullable=False),
    )
    op.create_index("ix_checkpoints_run_id", "checkpoints", ["run_id"])


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("metrics")
    op.drop_table("runs")
    op.drop_table("experiments")
