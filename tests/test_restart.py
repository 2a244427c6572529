"""A daemon replaced by a fresh one on the same database (SQLite and PostgreSQL), the devices running
on: open sessions (with their energy so far), the household-load history and the meter guard's
peak come back, and control resumes on the first tick. The `kill -9` of a real daemon process is
in `test_crash_restart.py`."""

from __future__ import annotations

from tests.fault_harness import start_run
from tests.scenarios import small_site
from youxu.controller.daemon import Daemon
from youxu.controller.store.storage import Store


async def test_sessions_and_history_survive_a_restart(db_url):
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=130.0)
    run = await start_run(sc, db_url, storage={"state_period_s": 5.0})
    try:
        run.set_base_kw(110.0)
        await run.tick(30)
        run.set_base_kw(100.0)
        await run.tick(91)
        loop = run.daemon.loop
        before = {pid: (s.id, s.delivered_kwh) for pid, s in loop.tracker.sessions.items()}
        assert len(before) == 4 and all(kwh > 0.1 for _, kwh in before.values())
        saved_at = loop._persisted_s
        assert run.daemon.store.flush(10.0)
        # the old daemon vanishes without saving (a crash); a new one starts on the same database
        run.daemon.io.close()
        run.daemon.store.close()
        run.clock.set(run.clock.now() + 20.0)
        seen = len(run.link.events)
        new = Daemon.build(run.daemon.cfg, clock=run.clock, link=run.link, store=Store(db_url), with_store=False)
        run.daemon = new
        assert new.restored["sessions"] == sorted(i for i, _ in before.values())
        assert new.restored["history_points"] >= 2  # 1-min averages and the raw readings after them
        after = new.loop.tracker.sessions
        for pid, (sid, kwh) in before.items():
            assert after[pid].id == sid and after[pid].delivered_kwh <= kwh + 1e-9
            assert after[pid].last_t_s <= saved_at
        peak = new.loop.meter_guard.peak()
        assert peak is not None and abs(peak[0] - 110.0) < 0.5  # the highest recent household load
        await run.tick(1)
        assert run.ev_setpoints_kw.sum() > 10.0  # control resumed at once
        for pid, (sid, kwh) in before.items():
            assert new.loop.tracker.sessions[pid].id == sid  # the same session, not a new one
            assert new.loop.tracker.sessions[pid].delivered_kwh >= kwh  # energy counted on, from the pile
        assert "session_started" not in [k for k, _, _ in list(run.link.events)[seen:]]
        assert run.max_over_run == 0
    finally:
        await run.close()
