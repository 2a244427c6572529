"""The daemon's loop on an RS-485 bus, and the piles' own failsafe when the daemon dies."""

from __future__ import annotations

import numpy as np

from tests.helpers import site_total_kw
from tests.scenarios import small_site
from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import NoGridLink
from youxu.controller.siteconfig import parse_site_config
from youxu.drivers.clock import VirtualClock
from youxu.sim.devices import DeviceAddress, SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.register_image import serve_image
from youxu.sim.site_config import scenario_site_config

BAUD = 38400



async def test_daemon_loop_runs_three_piles_and_the_meter_on_one_rtu_bus(modbus_servers, serial_pair):
    device_tty, youxu_tty = serial_pair
    sc = small_site(n_piles=3, base_kw=100.0, limit_kw=112.0)
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    devices = [serve_image(site.meter_image, 1, on_read=site.refresh_meter)]
    devices += [site._pile_device(i, 2 + i) for i in range(3)]
    modbus_servers.rtu(devices, device_tty, BAUD)
    url = f"modbus-rtu://{youxu_tty}?baud={BAUD}&parity=N&stop=1&spacing_ms=2"
    addresses = {"meter": DeviceAddress(url, 1), **{p.id: DeviceAddress(url, 2 + i) for i, p in enumerate(sc.piles)}}
    raw = scenario_site_config(sc, addresses, site_id="rtu",
                               control={"period_s": 1.0, "budget_ms": 3000.0, "strategy": "fairshare"})
    raw["transformer"]["margin_kw"] = 2.0
    for p in raw["piles"]:
        p["timeout_s"] = 0.5
    raw["meter"]["timeout_s"] = 0.5
    daemon = Daemon.build(parse_site_config(raw, "rtu config"), clock=clock, link=NoGridLink(), with_store=False)
    try:
        await daemon.program_failsafe()
        for _ in range(4):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        snap = daemon.loop.last_snapshot
        assert snap is not None and snap.meter_ok and snap.pile_online.all()
        # 10 kW of headroom for three cars: two run, none above the limit
        total = site_total_kw(site)
        assert total <= 112.0 - 2.0 + 1e-6
        assert total >= 112.0 - 2.0 - 7.0
        sp = site.phys.setpoint_kw
        assert ((sp == 0) | (sp >= 1.38 - 1e-6)).all() and (sp > 0).sum() >= 1
        # every device on the line answered every tick, through one bus
        assert len(daemon.io.pool.buses()) == 1
    finally:
        daemon.close()


async def test_piles_fall_back_to_their_safe_current_when_the_daemon_dies():
    sc = small_site(n_piles=4, base_kw=50.0, limit_kw=200.0)
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id="fs",
                               control={"period_s": 1.0, "budget_ms": 2000.0, "strategy": "fairshare"})
    for p in raw["piles"]:
        p["failsafe_a"] = 6.0
    daemon = Daemon.build(parse_site_config(raw, "failsafe config"), clock=clock, link=NoGridLink(),
                          with_store=False)
    try:
        await daemon.program_failsafe()
        assert (site.failsafe_timeout_s > 0).all()
        # 6 A at 230 V, in the simulated pile's 0.1 kW register
        np.testing.assert_allclose(site.failsafe_kw, 6.0 * 230 / 1000, atol=0.05)
        for _ in range(45):  # keep-alives ride on the ticks: no fallback while the loop runs
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        assert (site.phys.setpoint_kw > 5.0).all()
        # the daemon dies: no more ticks, no goodbye. After the piles' timeout they hold their safe current.
        clock.set(clock.now() + float(site.failsafe_timeout_s.max()) + 1.0)
        site.state_now()
        np.testing.assert_allclose(site.phys.setpoint_kw, site.failsafe_kw)
        assert site_total_kw(site) <= 50.0 + site.failsafe_kw.sum() + 1e-6
    finally:
        daemon.close()
        await site.stop()
