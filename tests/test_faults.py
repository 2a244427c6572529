"""Fault injection: the real daemon against simulated devices over Modbus TCP, with storage on SQLite
and on PostgreSQL. For every fault: the transformer (and phases) over its limit for at most 2 tick
periods, the right alarm through `GridLink.event` and in the events table, no exception out of a
tick, and the right state afterwards."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from sqlalchemy import select

from tests.fault_harness import Run, start_run
from tests.scenarios import small_site
from youxu.controller.store.schema import events

MAX_OVER_PERIODS = 2


def stored_kinds(run: Run) -> list[str]:
    store = run.daemon.store
    assert store is not None and store.flush(10.0), "store did not flush"
    with store.engine.connect() as c:
        return [r[0] for r in c.execute(select(events.c.kind).order_by(events.c.id))]


def assert_healthy(run: Run, alarm: str) -> None:
    assert run.max_over_run <= MAX_OVER_PERIODS, f"over the limit for {run.max_over_run} periods"
    assert run.daemon.loop.stats.tick_errors == 0
    assert "tick_error" not in run.link.kinds()
    assert alarm in run.link.kinds(), run.link.kinds()
    assert alarm in stored_kinds(run)


async def test_meter_lost_holds_then_limits_piles_below_the_recent_peak(db_url):
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=150.0)
    run = await start_run(sc, db_url, meter_grace_s=3.0)
    try:
        run.set_base_kw(112.0)
        await run.tick(5)
        run.set_base_kw(100.0)
        await run.tick(5)
        assert run.ev_setpoints_kw.sum() > 150.0 - 2.0 - 100.0 - 7.0  # the headroom is used
        run.site.meter_fault = True
        await run.tick(1)
        assert run.link.kinds().count("meter_lost") == 1
        assert run.daemon.loop.meter_guard.state == "held"
        # held: the last household load (100) plus the 2 kW margin, and the safety margin
        assert run.ev_setpoints_kw.sum() <= 150.0 - 2.0 - 102.0 + 1e-6
        await run.tick(4)  # the 3 s grace is over
        assert run.daemon.loop.meter_guard.state == "safe"
        (_, _, fields), = run.link.of("meter_safe_limit")
        safe_total = 150.0 - 2.0 - (112.0 + 2.0)  # the highest recent household load, not the last one
        assert fields["ev_limit_kw"] == safe_total
        sp = run.ev_setpoints_kw
        assert safe_total - 7.0 <= sp.sum() <= safe_total + 1e-6
        run.site.meter_fault = False
        await run.tick(2)
        assert "meter_restored" in run.link.kinds()
        assert run.daemon.loop.meter_guard.state == "ok"
        assert run.ev_setpoints_kw.sum() > safe_total + 5.0  # full headroom again
        assert_healthy(run, "meter_safe_limit")
    finally:
        await run.close()


async def test_meter_lost_from_the_start_pauses_the_piles(db_url):
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=150.0)
    run = await start_run(sc, db_url, meter_grace_s=2.0)
    try:
        run.site.meter_fault = True
        await run.tick(3)
        assert run.daemon.loop.meter_guard.state == "unknown"
        assert np.allclose(run.ev_setpoints_kw, 0.0)
        assert_healthy(run, "meter_safe_limit")
    finally:
        await run.close()


async def test_unreachable_pile_is_assumed_at_maximum_and_retried(db_url):
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=125.0)
    run = await start_run(sc, db_url, budget_ms=300.0, layout="ports")
    try:
        await run.tick(2)
        dev = run.daemon.io.piles[0]
        dev.bus.backoff_min_s = 0.3  # the bus's back-off, shortened for the test
        await run.unplug_pile_server(0)  # the pile's gateway goes away
        await run.tick(5)
        snap = run.daemon.loop.last_snapshot
        assert snap is not None and not snap.pile_online[0] and snap.fixed_kw[0] == 7.0
        others = run.ev_setpoints_kw[1:].sum()
        assert 100.0 + 7.0 + others <= 125.0 - 2.0 + 1e-6
        assert ("device_fault", "P01") in [(k, f.get("device")) for k, _, f in run.link.events]
        assert dev.bus.units[dev.unit].backoffs >= 1  # backed off, not hammered
        await run.replug_pile_server(0)
        for _ in range(60):
            await run.tick(1)
            if "device_restored" in run.link.kinds() and run.daemon.loop.last_snapshot.pile_online[0]:
                break
            await asyncio.sleep(0.05)
        assert "device_restored" in run.link.kinds()
        await run.tick(2)
        snap = run.daemon.loop.last_snapshot
        assert snap.pile_online[0] and np.isnan(snap.fixed_kw[0])
        assert run.ev_setpoints_kw[0] > 0  # back in the allocation
        assert_healthy(run, "device_fault")
    finally:
        await run.close()


async def test_pile_ignoring_its_setpoint_becomes_fixed_load(db_url):
    sc = small_site(n_piles=6, base_kw=120.0, limit_kw=140.0)
    run = await start_run(sc, db_url, pile_ignore_ticks=3)
    try:
        await run.tick(3)
        told = run.daemon.io.written_kw[0]
        assert 1.0 < told < 5.0  # about 3 kW each
        site = run.site
        obey = site.on_pile_write

        def rogue(i: int, name: str, value: float) -> None:
            if i == 0 and name == "setpoint":
                return  # ignored
            obey(i, name, value)

        site.on_pile_write = rogue
        site.phys.setpoint_kw[0] = 7.0  # draws its full power whatever it is told
        site._cache = None
        assert run.over_limit()
        await run.tick(1)  # this tick already makes room for it
        assert not run.over_limit()
        assert "pile_ignores_setpoint" not in run.link.kinds()  # not yet: could be a slow ramp
        await run.tick(3)
        (_, _, fields), = run.link.of("pile_ignores_setpoint")
        assert fields["pile"] == "P01" and fields["measured_kw"] >= 6.9
        assert run.daemon.loop.compliance.flagged[0]
        assert 120.0 + 7.0 + run.ev_setpoints_kw[1:].sum() <= 140.0 - 2.0 + 1e-6
        site.on_pile_write = obey  # the pile follows its setpoint again
        site.phys.setpoint_kw[0] = run.daemon.io.written_kw[0]
        site._cache = None
        await run.tick(4)
        assert "pile_obeys_setpoint" in run.link.kinds()
        assert not run.daemon.loop.compliance.flagged[0]
        await run.tick(2)
        assert run.ev_setpoints_kw[0] > 1.0  # allocated again
        assert_healthy(run, "pile_ignores_setpoint")
    finally:
        await run.close()


async def test_solver_timeout_uses_the_planner_fallback(db_url):
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=130.0)
    run = await start_run(sc, db_url, strategy="mpc", solver_time_limit_ms=0.01, planning_period_s=5.0)
    try:
        for _ in range(60):
            await run.tick(1)
            if "planner_fallback" in run.link.kinds():
                break
            await asyncio.sleep(0.02)  # the solve runs in its worker thread
        (_, _, fields), = run.link.of("planner_fallback")
        assert fields["status"]
        assert run.daemon.loop.stats.fallbacks >= 1
        await run.tick(3)
        assert run.ev_setpoints_kw.sum() > 10.0  # the fallback still charges
        assert_healthy(run, "planner_fallback")
    finally:
        await run.close()


async def test_a_failing_decision_leaves_piles_at_their_safe_current(db_url):
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=130.0)
    run = await start_run(sc, db_url)
    try:
        await run.tick(2)
        ctl = run.daemon.loop.controller
        decide = ctl.decide

        def broken(snap):
            raise FloatingPointError("bad plan")

        ctl.decide = broken
        await run.tick(3)
        assert run.link.kinds().count("decide_error") == 1
        assert np.allclose(run.ev_setpoints_kw, 1.38, atol=0.01)  # min_a at 230 V
        ctl.decide = decide
        await run.tick(1)
        assert "decide_restored" in run.link.kinds()
        assert run.ev_setpoints_kw.sum() > 4 * 1.38 + 1.0
        assert_healthy(run, "decide_error")
    finally:
        await run.close()


async def test_repeated_overruns_enter_and_leave_safe_mode(db_url):
    """The budget is set from this machine's own ticks (ten times the slowest of five), and a slow tick
    takes twice the budget: overruns and healthy ticks are told apart by a ratio, on any machine."""
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=130.0)
    run = await start_run(sc, db_url, budget_ms=5000.0, overrun_safe_mode=3, safe_mode_exit_ticks=4)
    try:
        loop = run.daemon.loop
        await run.tick(5)
        loop.budget_ms = 10.0 * max(r.tick_ms for r in run.reports[-5:])
        decide = loop.controller.decide
        slow = {"on": False, "calls": 0}

        def slow_decide(snap):
            if slow["on"]:
                slow["calls"] += 1
                time.sleep(2.0 * loop.budget_ms / 1000.0)
            return decide(snap)

        loop.controller.decide = slow_decide
        await run.tick(2)
        assert not loop.safe_mode and loop.stats.consecutive_overruns == 0
        normal = run.ev_setpoints_kw.copy()
        slow["on"] = True
        await run.tick(2)
        assert not loop.safe_mode
        await run.tick(1)
        assert loop.safe_mode and run.link.kinds().count("safe_mode") == 1
        rep = await run.tick(1)
        assert rep.safe_mode and slow["calls"] == 3  # the planner is skipped in safe mode
        assert np.allclose(run.ev_setpoints_kw, 1.38, atol=0.01)
        slow["on"] = False
        await run.tick(2)  # 3 healthy ticks so far, counting the first in safe mode
        assert loop.safe_mode and "safe_mode_cleared" not in run.link.kinds()
        await run.tick(1)
        assert not loop.safe_mode and "safe_mode_cleared" in run.link.kinds()
        rep = await run.tick(1)
        assert not rep.safe_mode
        assert np.allclose(run.ev_setpoints_kw, normal, atol=0.3)
        assert_healthy(run, "safe_mode")
    finally:
        await run.close()
