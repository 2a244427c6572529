"""The database goes away for 60 ticks (60 s of the daemon's virtual clock) while the real daemon
controls simulated devices over Modbus TCP: ticks stay within budget, the outage is alarmed, rows
are buffered (readings bounded, sessions and events never dropped) and land once it is back.

SQLite: another connection holds an exclusive lock (the writer's busy timeout shortened to 0.5 s).
PostgreSQL: the daemon reaches the server through a TCP gate that the test closes (connections cut
and refused) and opens again. The outage lasts 60 virtual seconds but about 1-2 real seconds; the
writer retries within that time, so the same states (down, buffering, dropping, back) are passed.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from tests.fault_harness import Run, start_run
from tests.fixtures_mqtt import TcpGate
from tests.scenarios import small_site
from youxu.controller.store import database
from youxu.controller.store.schema import events, readings, readings_1m, sessions

OUTAGE_TICKS = 60
BEFORE_TICKS = 20  # ticks with the database up: what this machine's ticks take, to compare the outage's with
# a tick that waited for the database would take the writer's lock wait (0.5 s) or connect timeout (5 s);
# the ticks are judged against the same machine's ticks before the outage, not against this budget
TICK_BUDGET_MS = 300.0
SQLITE_BUSY_TEST_S = 0.5


def count(run: Run, table) -> int:
    with run.daemon.store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


async def timed_tick(run: Run) -> float:
    """Milliseconds of one whole tick, the hand-off to storage after the writes included (the report's
    `tick_ms` stops at the writes)."""
    t0 = time.perf_counter()
    await run.tick(1)
    return (time.perf_counter() - t0) * 1e3


async def outage(run: Run, down: Callable[[], None], up: Callable[[], None]) -> tuple[np.ndarray, np.ndarray]:
    """Ticks before and during (both returned, in ms) and after an outage; the loop's misses during the
    outage are kept in `run.outage_misses`."""
    store = run.daemon.store
    await run.tick(5)
    assert store.flush(10.0) and store.db_ok
    before_ms = []
    for _ in range(BEFORE_TICKS):
        before_ms.append(await timed_tick(run))
        await asyncio.sleep(0.03)  # paced as the outage's first ticks, the writer writing meanwhile
    assert store.flush(10.0) and store.db_ok
    down()
    misses_before = run.daemon.loop.stats.deadline_misses
    tick_ms = []
    for _ in range(OUTAGE_TICKS):
        tick_ms.append(await timed_tick(run))
        await asyncio.sleep(0.03)  # real time for the writer to try (and fail) meanwhile, paced as before
    run.outage_misses = run.daemon.loop.stats.deadline_misses - misses_before
    assert not store.db_ok and store.write_failures >= 1
    assert "storage_down" in run.link.kinds()
    up()
    assert store.flush(20.0), f"queued rows did not land: {store.depths()}"
    await run.tick(1)
    assert "storage_restored" in run.link.kinds()
    assert store.flush(10.0)
    return np.asarray(before_ms), np.asarray(tick_ms)


def check_landed(run: Run, ticks_ms: tuple[np.ndarray, np.ndarray], expect_drops: bool) -> None:
    store = run.daemon.store
    before_ms, tick_ms = ticks_ms
    p50, p90 = np.percentile(tick_ms, [50, 90])
    b50, b90 = np.percentile(before_ms, [50, 90])
    print(f"\n  database down {OUTAGE_TICKS} ticks: tick p50 {p50:.1f} ms, p90 {p90:.1f} ms, "
          f"max {tick_ms.max():.1f} ms (database up: p50 {b50:.1f} ms, p90 {b90:.1f} ms); "
          f"dropped {store.dropped_bulk} bulk rows, written {store.written}")
    # no tick waits for the database (that would be the 0.5 s lock wait, or a connect timeout): the outage's
    # ticks take about what this machine's ticks took just before it; the writer retrying in its thread
    # meanwhile costs the loop a few milliseconds at most
    assert p50 < 5.0 * b50 and p90 < 5.0 * before_ms.max()
    ticks = run.daemon.loop.stats.ticks
    stored = count(run, readings)
    if expect_drops:
        assert store.dropped_bulk > 0 and "storage_rows_dropped" in run.link.kinds()
        assert stored < ticks
    else:
        assert store.dropped == 0 and stored == ticks  # every reading of the outage landed
    kinds = [r[0] for r in run.daemon.store.engine.connect().execute(select(events.c.kind))]
    assert "storage_down" in kinds and "storage_restored" in kinds  # alarms are never the ones dropped
    assert count(run, sessions) == len(run.site.sc.piles)
    assert count(run, readings_1m) >= 1
    assert run.max_over_run == 0 and run.daemon.loop.stats.tick_errors == 0


@pytest.mark.parametrize("queue_size", [10000, 40])
async def test_sqlite_locked_for_60_ticks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queue_size: int):
    monkeypatch.setattr(database, "SQLITE_BUSY_S", SQLITE_BUSY_TEST_S)
    path = tmp_path / "youxu.sqlite"
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=140.0)
    run = await start_run(sc, f"sqlite:///{path}", budget_ms=TICK_BUDGET_MS, storage={"state_period_s": 5.0},
                          store_kw={"queue_size": queue_size})
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        ticks_ms = await outage(run, lambda: holder.execute("BEGIN EXCLUSIVE"), lambda: holder.execute("COMMIT"))
        check_landed(run, ticks_ms, expect_drops=queue_size < 100)
    finally:
        holder.close()
        await run.close()


@pytest.mark.parametrize("queue_size", [10000, 40])
async def test_postgresql_unreachable_for_60_ticks(pg_schema, queue_size: int):
    gate = TcpGate(5432)
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=140.0)
    run = await start_run(sc, pg_schema.url(port=gate.port), budget_ms=TICK_BUDGET_MS, storage={"state_period_s": 5.0},
                          store_kw={"queue_size": queue_size})
    try:
        ticks_ms = await outage(run, gate.close_gate, gate.open_gate)
        check_landed(run, ticks_ms, expect_drops=queue_size < 100)
    finally:
        await run.close()
        gate.shutdown()
        gc.collect()  # connections cut by the gate are finalised here, not inside a later ast.parse (CPython 3.11)


async def test_postgresql_unreachable_at_start(pg_schema):
    gate = TcpGate(5432)
    gate.close_gate()
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=130.0)
    run = await start_run(sc, pg_schema.url(port=gate.port), budget_ms=TICK_BUDGET_MS)
    try:
        store = run.daemon.store
        assert not store.migrated and not store.db_ok
        await run.tick(10)  # control does not wait for the database
        assert run.ev_setpoints_kw.sum() > 20.0 and "storage_down" in run.link.kinds()
        gate.open_gate()
        assert store.flush(30.0) and store.migrated
        await run.tick(1)
        assert "storage_restored" in run.link.kinds()
        assert store.flush(10.0) and count(run, readings) == 11
    finally:
        await run.close()
        gate.shutdown()
        gc.collect()
