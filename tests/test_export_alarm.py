"""Reverse power: the real daemon reads a meter exporting beyond the export limit over Modbus TCP
and the grid hears an `export_overload` event on the real broker (and its clearing)."""

from __future__ import annotations

from tests.fixtures_mqtt import GridClient
from tests.scenarios import small_site
from tests.test_grid_mqtt import online
from youxu.controller.daemon import Daemon
from youxu.controller.siteconfig import parse_site_config
from youxu.drivers.clock import VirtualClock
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.site_config import scenario_site_config


async def test_export_beyond_the_limit_raises_an_event_and_clears(make_link, grid: GridClient) -> None:
    sc = small_site(n_piles=3, base_kw=100.0, limit_kw=150.0)
    sc.site.export_limit_kw = 60.0
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id="t",
                               control={"period_s": 1.0, "budget_ms": 2000.0, "strategy": "fairshare",
                                        "failsafe": False})
    link = await make_link(clock=clock)
    daemon = Daemon.build(parse_site_config(raw, "test config"), clock=clock, link=link, with_store=False)
    try:
        await online(grid, link)
        for _ in range(2):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        assert grid.events("export_overload") == []
        site.base_phase[:, :] = -1000.0 / 3  # the households feed 1,000 kW back through the transformer
        site._cache = None
        for _ in range(2):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        ev = await grid.until_event("export_overload")
        assert ev["total_kw"] < -900.0 and ev["export_limit_kw"] == 60.0
        site.base_phase[:, :] = 100.0 / 3
        site._cache = None
        await daemon.loop.tick()
        await grid.until_event("export_overload_cleared")
        assert len(grid.events("export_overload")) == 1
    finally:
        daemon.close()
        await site.stop()
