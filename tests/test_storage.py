"""Storage on SQLite and PostgreSQL: migrations (also from a database made before them), downsampling,
retention, rows the database refuses, the load history read back, and the dispatch tables kept in
the same database across a restart."""

from __future__ import annotations

import math

import numpy as np
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, func, insert, select

from youxu.controller.gridlink import TickReport
from youxu.controller.loop.sessions import Session
from youxu.controller.store import dispatch_store
from youxu.controller.store.database import current_revision, head_revision, make_engine
from youxu.controller.store.dispatch_store import SqlDispatchStore
from youxu.controller.store.downsample import Bucket
from youxu.controller.store.schema import events, metadata, readings, readings_1m, readings_15m, sessions
from youxu.controller.store.storage import Store
from youxu.controller.storelink import StoredCommand

T0 = 1_782_900_000.0  # 2026-07-01, on a 15-min boundary


def report(t_s: float, base_kw: float = 100.0, ev_kw: float = 20.0) -> TickReport:
    total = base_kw + ev_kw
    return TickReport(t_s=t_s, total_kw=total, base_kw=base_kw, ev_kw=ev_kw, phase_kw=(total / 3,) * 3,
                      limit_kw=150.0, setpoints_kw={"P1": ev_kw}, pile_status={"P1": "charging"},
                      pile_power_kw={"P1": ev_kw}, tick_ms=5.0)


def rows(store: Store, table) -> list:
    with store.engine.connect() as c:
        return list(c.execute(select(table).order_by(table.c.t_s if "t_s" in table.c else table.c.id)))


def n_rows(store: Store, table) -> int:
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def legacy_schema(engine) -> None:
    """The tables as youxu created them before migrations (create_all, no alembic_version)."""
    m = MetaData()
    Table("readings", m, Column("id", Integer, primary_key=True), Column("t_s", Float, nullable=False, index=True),
          *(Column(c, Float) for c in ("total_kw", "base_kw", "ev_kw", "l1_kw", "l2_kw", "l3_kw", "limit_kw",
                                       "tick_ms")))
    Table("setpoints", m, Column("id", Integer, primary_key=True), Column("t_s", Float, nullable=False, index=True),
          Column("pile_id", String(64), nullable=False), Column("kw", Float), Column("measured_kw", Float),
          Column("status", String(16)))
    Table("sessions", m, Column("id", String(96), primary_key=True), Column("pile_id", String(64), nullable=False),
          *(Column(c, Float) for c in ("arrival_s", "departure_s", "ended_s", "energy_requested_kwh",
                                       "energy_delivered_kwh")),
          *(Column(c, Integer) for c in ("v2g", "urgent", "booked")))
    Table("events", m, Column("id", Integer, primary_key=True), Column("t_s", Float, nullable=False, index=True),
          Column("kind", String(48), nullable=False), Column("message", String(512)), Column("fields", JSON))
    Table("state", m, Column("key", String(64), primary_key=True), Column("value", JSON), Column("t_s", Float))
    m.create_all(engine)
    dispatch_store.metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(insert(m.tables["readings"]), [{"t_s": T0, "total_kw": 120.0, "base_kw": 100.0, "ev_kw": 20.0}])


def test_migrations_upgrade_a_database_made_before_them(db_url):
    engine = make_engine(db_url)
    legacy_schema(engine)
    assert current_revision(engine) is None
    store = Store(db_url)
    try:
        assert store.migrated and current_revision(store.engine) == head_revision()
        with store.engine.connect() as c:  # the schema is exactly what the code declares
            ctx = MigrationContext.configure(c, opts={"compare_type": True})
            full = MetaData()
            for t in [*metadata.tables.values(), *dispatch_store.metadata.tables.values()]:
                t.to_metadata(full)
            assert compare_metadata(ctx, full) == []
        old = rows(store, readings)
        assert len(old) == 1 and old[0].base_kw == 100.0 and old[0].base_l1_kw is None
    finally:
        store.close()
        engine.dispose()


def test_bucket_averages_and_restarts_after_a_backward_step():
    b = Bucket(60.0)
    out = [b.add(T0 + i, (100.0 + i, 80.0, 20.0, *([None] * 6)), 150.0) for i in range(61)]
    closed = [r for r in out if r is not None]
    assert len(closed) == 1 and closed[0]["samples"] == 60
    assert math.isclose(closed[0]["total_kw"], 100.0 + 29.5) and closed[0]["total_max_kw"] == 159.0
    assert closed[0]["l1_kw"] is None and closed[0]["limit_min_kw"] == 150.0
    back = b.add(T0 - 3600.0, (1.0, 1.0, 0.0, *([None] * 6)), None)  # the clock stepped back an hour
    assert back is not None and back["t_s"] == T0 + 60.0 and back["samples"] == 1
    assert b.start_s == T0 - 3600.0


def test_readings_downsampled_pruned_and_read_back(db_url):
    store = Store(db_url, flush_s=0.05)
    try:
        store.retention = type(store.retention)(raw_s=1800.0, minute_s=86400.0, quarter_s=10 * 86400.0)
        for i in range(0, 3 * 3600, 10):  # three hours, a reading every 10 s
            store.tick(report(T0 + i, base_kw=100.0 + (i // 3600) * 10.0), base_phase_kw=np.array([40.0, 30.0, 30.0]))
        assert store.flush(20.0)
        assert n_rows(store, readings_15m) == 3 * 4 - 1  # the last quarter is still open
        m = rows(store, readings_1m)
        assert len(m) == 3 * 60 - 1 and all(r.samples == 6 for r in m)
        assert m[0].base_kw == 100.0 and m[-1].base_kw == 120.0 and m[0].base_l1_kw == 40.0
        hist = store.history(T0)
        assert hist.t_s[0] == T0 and np.all(np.diff(hist.t_s) > 0)  # 1-min rows, then raw after the last
        assert hist.t_s[-1] == T0 + 3 * 3600 - 10 and hist.base_phase_kw.shape == (len(hist.t_s), 3)
        assert np.allclose(hist.base_phase_kw[0], [40.0, 30.0, 30.0])
        end = T0 + 3 * 3600 + 700.0  # more than the pruning interval later
        store.tick(report(end))
        assert store.flush(10.0)
        assert rows(store, readings)[0].t_s >= end - 1800.0  # raw readings pruned to their window
        assert rows(store, readings_1m)[0].t_s == T0  # minutes kept longer
    finally:
        store.close()


def test_a_refused_row_is_dropped_and_the_rest_lands(db_url):
    store = Store(db_url, flush_s=0.05)
    try:
        store.event(T0, "fine_before", "ok")
        store.event(None, "refused", "no time")  # type: ignore[arg-type]  # NOT NULL: the database refuses it
        store.event(T0 + 1, "fine_after", "ok", {"kw": float("nan"), "inf": float("inf")})
        s = Session("P1-1", "P1", T0, T0 + 3600, 20.0, None, delivered_kwh=5.0)
        store.sessions_open([s], T0 + 2)
        store.tick(report(T0 + 2))
        assert store.flush(10.0)
        kinds = [r.kind for r in rows(store, events)]
        assert kinds == ["fine_before", "fine_after"] and store.rejected == 1 and store.db_ok
        assert rows(store, events)[1].fields == {"kw": None, "inf": None}
        (sess,) = rows(store, sessions)
        assert sess.state == "plugged" and sess.ended_s is None and sess.energy_delivered_kwh == 5.0
        store.session_closed(s, T0 + 9)  # upserted: still one row, now closed
        assert store.flush(10.0)
        (sess,) = rows(store, sessions)
        assert sess.state == "closed" and sess.ended_s == T0 + 9
    finally:
        store.close()


def test_dispatch_commands_and_sequence_numbers_share_the_database_and_survive(db_url):
    store = Store(db_url)
    ds = SqlDispatchStore(store.engine)
    rec = StoredCommand("c-100", "bj-dms", 100, "dispatch", "active", '{"x": 1}', T0, T0 + 3600)
    assert ds.accept(rec)
    store.close()
    store2 = Store(db_url)  # the daemon again, after a restart
    try:
        ds2 = SqlDispatchStore(store2.engine)
        assert ds2.last_seq("bj-dms") == 100
        assert [c.command_id for c in ds2.open_commands()] == ["c-100"]
        assert not ds2.accept(StoredCommand("c-99", "bj-dms", 99, "dispatch", "received", "{}", T0 + 5))
        assert not ds2.accept(rec)  # the same command replayed
        assert ds2.accept(StoredCommand("c-101", "bj-dms", 101, "dispatch", "received", "{}", T0 + 6))
    finally:
        store2.close()


def test_backup_of_a_live_sqlite_database(tmp_path):
    from youxu.controller.store.backup import backup

    url = f"sqlite:///{tmp_path / 'youxu.sqlite'}"
    store = Store(url, flush_s=0.01)
    try:
        for i in range(2000):
            store.tick(report(T0 + i))
        store.event(T0, "before_backup", "kept")
        assert store.flush(10.0)
        for i in range(2000, 4000):  # the writer keeps writing while the copy is taken
            store.tick(report(T0 + i))
        out = backup(url, tmp_path / "backups", now_s=T0)
        assert out.name == "youxu-20260701T100000Z.sqlite"
        copy = Store(f"sqlite:///{out}", migrate=False)
        try:
            assert current_revision(copy.engine) == head_revision()
            assert [r.kind for r in rows(copy, events)] == ["before_backup"]
            assert 2000 <= n_rows(copy, readings) <= 4000
        finally:
            copy.close()
    finally:
        store.close()
