"""NTP steps of the gateway's wall clock while the daemon runs in real time: one tick per period on
steady time (no stall after a backward step, no burst after a forward one), the step alarmed,
intervals the loop measures stay positive, and energy counting carries on."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np

from tests.fault_harness import RecordingLink
from tests.scenarios import small_site
from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import Booking
from youxu.controller.loop.sessions import PileObservation, SessionTracker
from youxu.controller.siteconfig import parse_site_config
from youxu.drivers.clock import ScaledClock
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.site_config import scenario_site_config

PERIOD_S = 0.1


class SteppingClock:
    """A gateway's wall clock that NTP can step; it has a monotonic clock beside it, as Linux does."""

    speed = 1.0

    def __init__(self, start_s: float) -> None:
        self.origin = time.monotonic()
        self.start_s = start_s
        self.offset_s = 0.0

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return self.start_s + (time.monotonic() - self.origin) + self.offset_s

    def step(self, s: float) -> None:
        self.offset_s += s

    async def sleep_until(self, t_s: float) -> None:  # by the wall clock, as RealClock sleeps
        while (left := t_s - self.now()) > 0:
            await asyncio.sleep(min(left, 0.05))


async def test_wall_clock_steps_neither_stall_nor_burst_the_loop(tmp_path):
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=130.0)
    devices_clock = ScaledClock(sc.start.timestamp() + 600.0, 1.0)  # the physical world does not jump
    site = SimulatedSite(sc, devices_clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id="t",
                               control={"period_s": PERIOD_S, "budget_ms": 80.0, "strategy": "fairshare",
                                        "failsafe": False})
    raw["storage"] = {"url": f"sqlite:///{tmp_path / 'youxu.sqlite'}"}
    cfg = parse_site_config(raw, "test")
    clock = SteppingClock(sc.start.timestamp() + 600.0)
    link = RecordingLink()
    daemon = Daemon.build(cfg, clock=clock, link=link)
    ticks: list[tuple[float, float, dict[str, float], dict[str, float]]] = []

    def record(report, loop) -> None:
        ticks.append((loop.steady(), report.t_s, {p: s.delivered_kwh for p, s in loop.tracker.sessions.items()},
                      {p: s.last_t_s for p, s in loop.tracker.sessions.items()}))

    daemon.loop.listeners.append(record)
    starts: list[float] = []
    slots: list[float] = []  # the steady time each tick was due at
    tick = daemon.loop.tick

    async def timed_tick():
        starts.append(daemon.loop.steady())
        assert daemon.loop.ticker is not None and daemon.loop.ticker.next_steady_s is not None
        slots.append(daemon.loop.ticker.next_steady_s)
        return await tick()

    daemon.loop.tick = timed_tick  # type: ignore[method-assign]
    stop = asyncio.Event()
    t0 = time.monotonic()
    task = asyncio.create_task(daemon.loop.run(stop))
    try:
        await asyncio.sleep(1.0)
        at_steady = [daemon.loop.steady()]
        clock.step(+3600.0)  # NTP corrects a clock an hour slow
        await asyncio.sleep(1.0)
        at_steady.append(daemon.loop.steady())
        clock.step(-3600.0)  # ...and back: a stall of an hour if the loop slept by the wall clock
        await asyncio.sleep(1.0)
        at_steady.append(daemon.loop.steady())
    finally:
        stop.set()
        await asyncio.wait_for(task, 5.0)
        elapsed = time.monotonic() - t0
        daemon.close()
        await site.stop()
    st = daemon.loop.stats
    expected = elapsed / PERIOD_S
    assert expected - 3 - st.skipped_periods <= len(ticks) <= expected + 1, (len(ticks), expected, st.skipped_periods)
    # logical, whatever this machine's speed: a tick never starts before the steady time it is due at (a
    # forward step does not bring ticks on), each period is served once (none twice, the skipped ones
    # counted), and ticks plus skipped periods add up to the time elapsed (a backward step stalls nothing)
    assert all(start >= slot - 1e-3 for start, slot in zip(starts, slots, strict=True))
    periods = np.round(np.diff(slots) / PERIOD_S).astype(int)
    assert periods.min() >= 1 and int((periods - 1).sum()) <= st.skipped_periods
    gaps = np.diff(starts)
    assert gaps.max() < 2.5 * PERIOD_S + st.skipped_periods * PERIOD_S  # none lost
    # each second (before, between and after the steps) at most one tick per period, and after either step
    # ticks at about the rate this machine managed before them
    edges = [starts[0], *at_steady]
    counts = np.histogram(starts, bins=edges)[0]
    rates = counts / np.diff(edges)
    assert all(c <= w / PERIOD_S + 1 for c, w in zip(counts, np.diff(edges), strict=True)), counts
    assert rates[1] > 0.5 * rates[0] and rates[2] > 0.5 * rates[0], rates
    steps = [f["step_s"] for k, _, f in link.events if k == "clock_step"]
    assert len(steps) == 2 and abs(steps[0] - 3600.0) < 1.0 and abs(steps[1] + 3600.0) < 1.0
    assert st.clock_steps == 2 and st.tick_errors == 0
    for prev, cur in itertools.pairwise(ticks):
        for pid, kwh in cur[2].items():
            if pid in prev[2]:
                assert kwh >= prev[2][pid] - 1e-9  # energy never goes back
                assert kwh - prev[2][pid] < 7.0 * 3 * PERIOD_S / 3600.0 + 1e-3  # nor jumps by an hour's worth
        for last in cur[3].values():
            assert last == cur[1]  # every session measured at this tick's time
    wall = np.array([t[1] for t in ticks])
    assert wall.max() - wall.min() > 3000.0  # the timestamps did follow the wall clock


def test_energy_integration_over_a_step_uses_the_real_interval():
    tr = SessionTracker(("P1",))
    tr.apply_booking(Booking("P1", 1e9, 10.0))
    obs = {"P1": PileObservation("charging", 7.2, None)}
    tr.update(1000.0, obs, {"P1": 7.2}, {"P1": 1.4})
    tr.update(1001.0, obs, {"P1": 7.2}, {"P1": 1.4})
    assert abs(tr.sessions["P1"].delivered_kwh - 7.2 / 3600.0) < 1e-12
    tr.shift_time(-3600.0)  # the wall clock went back an hour between two ticks
    tr.update(1002.0 - 3600.0, obs, {"P1": 7.2}, {"P1": 1.4})
    assert abs(tr.sessions["P1"].delivered_kwh - 2 * 7.2 / 3600.0) < 1e-12
    tr.update(1003.0 + 7200.0, obs, {"P1": 7.2}, {"P1": 1.4})  # a gap not integrated (a stop, a step unseen)
    assert abs(tr.sessions["P1"].delivered_kwh - 2 * 7.2 / 3600.0) < 1e-12
