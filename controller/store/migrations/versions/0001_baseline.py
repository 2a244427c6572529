"""Baseline: the tables youxu created before migrations existed (readings, setpoints, sessions,
events, state) and the dispatch store's (commands, acks, issuers' sequence numbers).

A database made by an older youxu already has some of them: only the missing ones are created.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("readings"):
        op.create_table(
            "readings",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("t_s", sa.Float, nullable=False),
            sa.Column("total_kw", sa.Float), sa.Column("base_kw", sa.Float), sa.Column("ev_kw", sa.Float),
            sa.Column("l1_kw", sa.Float), sa.Column("l2_kw", sa.Float), sa.Column("l3_kw", sa.Float),
            sa.Column("limit_kw", sa.Float), sa.Column("tick_ms", sa.Float),
        )
        op.create_index("ix_readings_t_s", "readings", ["t_s"])
    if _missing("setpoints"):
        op.create_table(
            "setpoints",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("t_s", sa.Float, nullable=False),
            sa.Column("pile_id", sa.String(64), nullable=False),
            sa.Column("kw", sa.Float), sa.Column("measured_kw", sa.Float), sa.Column("status", sa.String(16)),
        )
        op.create_index("ix_setpoints_t_s", "setpoints", ["t_s"])
    if _missing("sessions"):
        op.create_table(
            "sessions",
            sa.Column("id", sa.String(96), primary_key=True),
            sa.Column("pile_id", sa.String(64), nullable=False),
            sa.Column("arrival_s", sa.Float), sa.Column("departure_s", sa.Float), sa.Column("ended_s", sa.Float),
            sa.Column("energy_requested_kwh", sa.Float), sa.Column("energy_delivered_kwh", sa.Float),
            sa.Column("v2g", sa.Integer), sa.Column("urgent", sa.Integer), sa.Column("booked", sa.Integer),
        )
    if _missing("events"):
        op.create_table(
            "events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("t_s", sa.Float, nullable=False),
            sa.Column("kind", sa.String(48), nullable=False),
            sa.Column("message", sa.String(512)),
            sa.Column("fields", sa.JSON),
        )
        op.create_index("ix_events_t_s", "events", ["t_s"])
    if _missing("state"):
        op.create_table(
            "state",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.JSON),
            sa.Column("t_s", sa.Float),
        )
    if _missing("dispatch_commands"):
        op.create_table(
            "dispatch_commands",
            sa.Column("command_id", sa.String(128), primary_key=True),
            sa.Column("issuer", sa.String(128), nullable=False),
            sa.Column("seq", sa.BigInteger, nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("received_s", sa.Float, nullable=False),
            sa.Column("end_s", sa.Float),
            sa.Column("applied_s", sa.Float),
            sa.Column("response_topic", sa.String(1024)),
            sa.Column("correlation_data", sa.LargeBinary),
            sa.Column("updated_s", sa.Float, nullable=False),
        )
        op.create_index("ix_dispatch_commands_issuer", "dispatch_commands", ["issuer"])
        op.create_index("ix_dispatch_commands_state", "dispatch_commands", ["state"])
    if _missing("dispatch_acks"):
        op.create_table(
            "dispatch_acks",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("command_id", sa.String(128)),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("reason", sa.String(64)),
            sa.Column("at_s", sa.Float, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
        )
        op.create_index("ix_dispatch_acks_command_id", "dispatch_acks", ["command_id"])
    if _missing("dispatch_issuer_seqs"):
        op.create_table(
            "dispatch_issuer_seqs",
            sa.Column("issuer", sa.String(128), primary_key=True),
            sa.Column("last_seq", sa.BigInteger, nullable=False),
            sa.Column("updated_s", sa.Float, nullable=False),
        )


def downgrade() -> None:
    for name in ("dispatch_issuer_seqs", "dispatch_acks", "dispatch_commands", "state", "events", "sessions",
                 "setpoints", "readings"):
        op.drop_table(name)
