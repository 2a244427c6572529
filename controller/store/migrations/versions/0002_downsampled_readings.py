"""Downsampled readings (1-min, 15-min), loop statistics, per-phase household load in readings,
and open sessions (state, updated_s) in the sessions table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

READING_COLUMNS = ("total_kw", "base_kw", "ev_kw", "l1_kw", "l2_kw", "l3_kw", "base_l1_kw", "base_l2_kw",
                   "base_l3_kw")


def _aggregate(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("t_s", sa.Float, nullable=False),
        sa.Column("width_s", sa.Float, nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        *(sa.Column(c, sa.Float) for c in READING_COLUMNS),
        sa.Column("total_max_kw", sa.Float), sa.Column("base_max_kw", sa.Float), sa.Column("limit_min_kw", sa.Float),
    )
    op.create_index(f"ix_{name}_t_s", name, ["t_s"])


def upgrade() -> None:
    _aggregate("readings_1m")
    _aggregate("readings_15m")
    op.create_table(
        "loop_stats",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("t_s", sa.Float, nullable=False),
        sa.Column("width_s", sa.Float, nullable=False),
        sa.Column("ticks", sa.Integer), sa.Column("deadline_misses", sa.Integer),
        sa.Column("tick_ms_p50", sa.Float), sa.Column("tick_ms_p99", sa.Float), sa.Column("tick_ms_max", sa.Float),
        sa.Column("plan_ms_max", sa.Float), sa.Column("fallbacks", sa.Integer), sa.Column("safe_mode", sa.Integer),
        sa.Column("rows_dropped", sa.Integer), sa.Column("queue_depth", sa.Integer),
    )
    op.create_index("ix_loop_stats_t_s", "loop_stats", ["t_s"])
    with op.batch_alter_table("readings") as b:
        for c in ("base_l1_kw", "base_l2_kw", "base_l3_kw"):
            b.add_column(sa.Column(c, sa.Float))
        b.add_column(sa.Column("meter_ok", sa.Integer))
    with op.batch_alter_table("sessions") as b:
        b.add_column(sa.Column("state", sa.String(16)))
        b.add_column(sa.Column("updated_s", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as b:
        b.drop_column("updated_s")
        b.drop_column("state")
    with op.batch_alter_table("readings") as b:
        for c in ("meter_ok", "base_l3_kw", "base_l2_kw", "base_l1_kw"):
            b.drop_column(c)
    op.drop_table("loop_stats")
    op.drop_table("readings_15m")
    op.drop_table("readings_1m")
