"""The real daemon against simulated devices over Modbus TCP, on a virtual clock, with a recording
grid link and (optionally) a store: for injecting faults tick by tick and checking the transformer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from pymodbus.server import ModbusTcpServer

from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import NoGridLink, TickReport
from youxu.controller.siteconfig import parse_site_config
from youxu.controller.store.storage import Store
from youxu.drivers.clock import VirtualClock
from youxu.drivers.profiles import load_profile
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port, free_port_block
from youxu.sim.register_image import RegisterImage
from youxu.sim.scenario import Scenario
from youxu.sim.site_config import scenario_site_config

TOL_KW = 0.1  # as the contract counts violations


class RecordingLink(NoGridLink):
    """No broker: records every `GridLink.event` and every tick report."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[TickReport] = []

    def after_tick(self, report: TickReport) -> None:
        self.reports.append(report)

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.events]

    def of(self, kind: str) -> list[tuple[str, str, dict]]:
        return [e for e in self.events if e[0] == kind]


@dataclass
class Run:
    clock: VirtualClock
    site: SimulatedSite
    daemon: Daemon
    link: RecordingLink
    limit_kw: float
    phase_limit_kw: float | None
    over_run: int = 0  # consecutive periods over a limit so far
    max_over_run: int = 0
    over_periods: int = 0
    outage_misses: int = 0  # deadline misses while an injected outage lasted
    reports: list[TickReport] = field(default_factory=list)

    def true_load(self) -> tuple[float, np.ndarray]:
        """What the transformer carries now (the simulator's truth, not the daemon's view)."""
        _, p = self.site.state_now()
        k = min(int(self.site.sim_t() // self.site.sc.step_s), self.site.sc.n_steps - 1)
        phase = self.site.base_phase[k] + p @ self.site.phys.piles.phase_share
        return float(phase.sum()), phase

    def over_limit(self) -> bool:
        total, phase = self.true_load()
        over = total > self.limit_kw + TOL_KW
        if self.phase_limit_kw is not None:
            over |= bool((phase > self.phase_limit_kw + TOL_KW).any())
        return over

    def _account(self) -> None:
        if self.over_limit():
            self.over_run += 1
            self.over_periods += 1
            self.max_over_run = max(self.max_over_run, self.over_run)
        else:
            self.over_run = 0

    async def tick(self, n: int = 1, dt_s: float = 1.0) -> TickReport:
        """Check the period that just ended, tick, move the clock on; `n` times."""
        rep = None
        for _ in range(n):
            self._account()  # the load carried since the last tick
            rep = await self.daemon.loop.tick()
            self.reports.append(rep)
            self.clock.set(self.clock.now() + dt_s)
        assert rep is not None
        return rep

    def set_base_kw(self, kw: float) -> None:
        self.site.base_phase[:, :] = kw / 3.0
        self.site._cache = None

    @property
    def ev_setpoints_kw(self) -> np.ndarray:
        return self.site.phys.setpoint_kw.copy()

    async def unplug_pile_server(self, i: int) -> None:
        """With layout `ports`: pile i's server goes away (connections refused)."""
        await self.site.servers[1 + i].shutdown()
        self.site.tasks[1 + i].cancel()

    async def replug_pile_server(self, i: int) -> None:
        address = self.site.servers[1 + i].comm_params.source_address
        srv = ModbusTcpServer([self.site._pile_device(i, 1)], address=address)
        self.site.servers[1 + i] = srv
        self.site.tasks[1 + i] = asyncio.create_task(srv.serve_forever())
        await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.daemon.link is not self.link:
            await self.daemon.link.stop()
        self.daemon.close()
        await self.site.stop()


async def start_run(sc: Scenario, store_url: str | None = None, margin_kw: float = 2.0, store_kw: dict | None = None,
                    layout: str = "units", storage: dict | None = None, thermal: dict | None = None,
                    mqtt: dict | None = None, meter_profile: str | None = None, **control: object) -> Run:
    """`thermal`: a `transformer.thermal` section; `mqtt`: an mqtt section, then the daemon's grid link is a
    real MqttGridLink (started; `Run.link` stays a RecordingLink that sees nothing); `meter_profile`: a
    profile file the simulated meter serves (a superset of sdm630's registers) and the daemon reads."""
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    if meter_profile is not None:
        site.meter_image = RegisterImage(load_profile(meter_profile))
    port = free_port() if layout == "units" else free_port_block(1 + len(sc.piles))
    await site.start(port=port, layout=layout)
    ctl = {"period_s": 1.0, "budget_ms": 500.0, "strategy": "fairshare", "failsafe": False, **control}
    raw = scenario_site_config(sc, site.addresses, site_id="t", control=ctl)
    raw["transformer"]["margin_kw"] = margin_kw
    raw["storage"].update(storage or {})
    if meter_profile is not None:
        raw["meter"]["profile"] = meter_profile
    if thermal is not None:
        raw["transformer"]["thermal"] = thermal
    if mqtt is not None:
        raw["mqtt"] = mqtt
    cfg = parse_site_config(raw, "test config")
    link = RecordingLink()
    grid_link = link
    if mqtt is not None:
        from youxu.controller.grid.mqtt_link import MqttGridLink
        from youxu.controller.store.dispatch_store import MemoryDispatchStore

        grid_link = MqttGridLink(cfg, clock, store=MemoryDispatchStore())
        await grid_link.start()
    store = None
    if store_url is not None:
        store = Store(store_url, **{"flush_s": 0.05, **(store_kw or {})})
    daemon = Daemon.build(cfg, clock=clock, link=grid_link, store=store, with_store=False)
    phase = sc.site.phase_limit_kw
    return Run(clock, site, daemon, link, sc.site.limit_kw, None if phase is None else float(min(phase.values())))
