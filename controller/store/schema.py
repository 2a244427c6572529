"""The daemon's tables (SQLAlchemy Core). Alembic migrations in `store/migrations/` create them.

Times are epoch seconds (`t_s`), power in kW, energy in kWh. Dispatch commands, acks and
issuers' sequence numbers live in the same database, in `youxu.controller.grid.dispatch_store`'s tables.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Index, Integer, MetaData, String, Table

metadata = MetaData()

READING_COLUMNS = ("total_kw", "base_kw", "ev_kw", "l1_kw", "l2_kw", "l3_kw", "base_l1_kw", "base_l2_kw",
                   "base_l3_kw")

readings = Table(
    "readings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t_s", Float, nullable=False, index=True),
    Column("total_kw", Float), Column("base_kw", Float), Column("ev_kw", Float),
    Column("l1_kw", Float), Column("l2_kw", Float), Column("l3_kw", Float),
    Column("limit_kw", Float), Column("tick_ms", Float),
    Column("base_l1_kw", Float), Column("base_l2_kw", Float), Column("base_l3_kw", Float),
    Column("meter_ok", Integer),
)


def _aggregate(name: str) -> Table:
    """Readings averaged over a bucket that starts at t_s (1-min and 15-min tables)."""
    return Table(
        name, metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("t_s", Float, nullable=False),
        Column("width_s", Float, nullable=False),
        Column("samples", Integer, nullable=False),
        *(Column(c, Float) for c in READING_COLUMNS),
        Column("total_max_kw", Float), Column("base_max_kw", Float), Column("limit_min_kw", Float),
        Index(f"ix_{name}_t_s", "t_s"),
    )


readings_1m = _aggregate("readings_1m")
readings_15m = _aggregate("readings_15m")

setpoints = Table(
    "setpoints", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t_s", Float, nullable=False, index=True),
    Column("pile_id", String(64), nullable=False),
    Column("kw", Float), Column("measured_kw", Float), Column("status", String(16)),
)

sessions = Table(
    "sessions", metadata,
    Column("id", String(96), primary_key=True),
    Column("pile_id", String(64), nullable=False),
    Column("arrival_s", Float), Column("departure_s", Float), Column("ended_s", Float),
    Column("energy_requested_kwh", Float), Column("energy_delivered_kwh", Float),
    Column("v2g", Integer), Column("urgent", Integer), Column("booked", Integer),
    Column("state", String(16)), Column("updated_s", Float),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t_s", Float, nullable=False, index=True),
    Column("kind", String(48), nullable=False),
    Column("message", String(512)),
    Column("fields", JSON),
)

state = Table(
    "state", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON),
    Column("t_s", Float),
)

loop_stats = Table(
    "loop_stats", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t_s", Float, nullable=False, index=True),
    Column("width_s", Float, nullable=False),
    Column("ticks", Integer), Column("deadline_misses", Integer),
    Column("tick_ms_p50", Float), Column("tick_ms_p99", Float), Column("tick_ms_max", Float),
    Column("plan_ms_max", Float), Column("fallbacks", Integer), Column("safe_mode", Integer),
    Column("rows_dropped", Integer), Column("queue_depth", Integer),
)

# what retention prunes, and by which window ("raw", "minute", "quarter")
RETAINED = ((readings, "raw"), (setpoints, "raw"), (loop_stats, "raw"), (readings_1m, "minute"),
            (events, "minute"), (readings_15m, "quarter"))
