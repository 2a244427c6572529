"""The real daemon (fast loop, drivers, safety) against simulated devices over real Modbus TCP."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import site_total_kw
from tests.scenarios import small_site
from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import NoGridLink
from youxu.controller.siteconfig import parse_site_config
from youxu.drivers.clock import VirtualClock
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.site_config import scenario_site_config


async def start_site(sc, strategy: str = "fairshare", margin_kw: float = 2.0, **control):
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id="t",
                               control={"period_s": 1.0, "budget_ms": 2000.0, "strategy": strategy, **control})
    raw["transformer"]["margin_kw"] = margin_kw
    cfg = parse_site_config(raw, "test config")
    daemon = Daemon.build(cfg, clock=clock, link=NoGridLink(), with_store=False)
    return clock, site, daemon



async def test_daemon_charges_piles_over_tcp_within_the_limit():
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=130.0)
    clock, site, daemon = await start_site(sc)
    try:
        for _ in range(3):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        total = site_total_kw(site)
        assert 130.0 - 2.0 - 7.0 <= total <= 130.0 - 2.0 + 1e-6  # uses the headroom, keeps the margin
        assert (site.phys.setpoint_kw >= 1.38 - 1e-6).sum() >= 4
        r = daemon.loop.last_snapshot
        assert r is not None and r.meter_ok and r.pile_online.all()
    finally:
        daemon.close()
        await site.stop()


async def test_household_jump_is_answered_by_the_next_tick():
    sc = small_site(n_piles=9, base_kw=100.0, limit_kw=170.0)
    clock, site, daemon = await start_site(sc)
    try:
        for _ in range(3):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        before = site_total_kw(site)
        assert before > 150.0  # the piles use the headroom (about 60 kW)
        site.base_phase[:, :] += 40.0 / 3  # households jump by 40 kW: the allocation now overloads
        site._cache = None
        assert site_total_kw(site) > 170.0
        await daemon.loop.tick()  # the next tick sees the overload and cuts
        assert site_total_kw(site) <= 170.0 + 1e-6
        assert ((site.phys.setpoint_kw == 0) | (site.phys.setpoint_kw >= 1.38 - 1e-6)).all()
    finally:
        daemon.close()
        await site.stop()


async def test_phase_limit_is_held_over_tcp():
    sc = small_site(n_piles=9, base_kw=90.0, limit_kw=400.0, phase_limit_kw=40.0)
    clock, site, daemon = await start_site(sc)
    try:
        for _ in range(3):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        _, p = site.state_now()
        phase = site.base_phase[0] + p @ site.phys.piles.phase_share
        assert (phase <= 40.0 + 1e-6).all()
        assert p.sum() > 20.0  # still charging within the phase headroom
    finally:
        daemon.close()
        await site.stop()


async def test_unreachable_pile_is_assumed_at_its_maximum():
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=125.0)
    clock, site, daemon = await start_site(sc)
    try:
        await daemon.loop.tick()
        pid = sc.piles[0].id
        bus = daemon.io.piles[0].bus
        unit = daemon.io.piles[0].unit
        daemon.io.piles[0].unit = 99  # the pile stops answering (no such unit)
        clock.set(clock.now() + 1.0)
        await daemon.loop.tick()
        snap = daemon.loop.last_snapshot
        assert not snap.pile_online[0]
        sp = site.phys.setpoint_kw
        # the others keep the limit as if the lost pile drew its full 7 kW
        assert 100.0 + 7.0 + sp[1:].sum() <= 125.0 - 2.0 + 1e-6
        daemon.io.piles[0].unit = unit
        assert bus is daemon.io.piles[0].bus and pid
    finally:
        daemon.close()
        await site.stop()


@pytest.mark.parametrize("strategy", ["fairshare", "edf", "llf"])
async def test_strategies_run_in_the_daemon(strategy):
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=125.0)
    clock, site, daemon = await start_site(sc, strategy=strategy)
    try:
        for _ in range(2):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        assert site_total_kw(site) <= 125.0 - 2.0 + 1e-6
        assert np.any(site.phys.setpoint_kw > 0)
    finally:
        daemon.close()
        await site.stop()


def test_vectorised_register_encoding_matches_the_codec():
    from youxu.drivers.profiles import Register
    from youxu.drivers.registers import encode_canonical, encode_many_canonical

    rng = np.random.default_rng(7)
    for t in ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"):
        for order in ("big", "little"):
            for unit, scale in (("W", 1.0), ("kW", 0.1), ("Wh", 10.0), ("%", 0.1)):
                reg = Register(address=0, type=t, word_order=order, unit=unit, scale=scale)
                vals = rng.uniform(0 if t.startswith("u") else -3, 3, 25)
                many = encode_many_canonical(vals, reg)
                one = np.array([encode_canonical(v, reg) for v in vals])
                assert (many == one).all(), (t, order, unit)
