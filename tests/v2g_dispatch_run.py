"""A V2G setpoint through the daemon in-process: the real `FastLoop` (mpc planner, dead band,
safety) over Modbus TCP to a `SimulatedSite` on a `VirtualClock`, and an `MqttGridLink` on a real
broker, where a grid client books the cars and sends the setpoint. Measured on the simulator's
physics: the EV aggregate every tick, and what each car had when it left.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.dispatch_builders import command, rfc
from tests.fixtures_mqtt import Broker, connect_client
from youxu.controller.daemon import Daemon
from youxu.controller.grid.mqtt_link import MqttGridLink
from youxu.controller.siteconfig import parse_site_config
from youxu.controller.store.dispatch_store import MemoryDispatchStore
from youxu.drivers.clock import VirtualClock
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.scenario import Scenario
from youxu.sim.site_config import scenario_site_config


@dataclass(frozen=True)
class V2gCase:
    site_id: str = "e2e-v2g"
    start: str = "2026-07-01T22:07:30+08:00"  # departures fall inside the planner's 15-min steps, as in life
    n_cars: int = 10
    max_kw: float = 7.0
    departure_s: float = 5400.0
    energy_kwh: float = 6.0
    soc_arrival: float = 0.5
    min_soc: float = 0.3
    base_kw: float = 100.0
    setpoint_kw: float = -50.0
    warmup_ticks: int = 5
    setpoint_s: float = 300.0
    tolerance: float = 0.05  # of the setpoint
    after_step_s: float = 10.0  # tick spacing (virtual) from the setpoint's end to the departures
    to_departure: bool = True  # run on until the cars leave (else stop when the setpoint ends)

    def scenario(self) -> Scenario:
        piles = [{"id": f"V{i + 1:02d}", "max_kw": self.max_kw, "min_kw": 1.38, "phases": 1,
                  "phase": ("L1", "L2", "L3")[i % 3], "v2g": True, "max_discharge_kw": self.max_kw}
                 for i in range(self.n_cars)]
        sessions = [{"id": f"S{i + 1:03d}", "pile": p["id"], "arrival_s": 0, "departure_s": self.departure_s,
                     "energy_kwh": self.energy_kwh, "battery_kwh": 60.0, "soc_arrival": self.soc_arrival,
                     "v2g": True, "min_soc": self.min_soc, "priority": "normal"} for i, p in enumerate(piles)]
        return Scenario.model_validate({
            "format": "youxu.scenario/1", "name": "v2g-setpoint", "start": self.start, "step_s": 60,
            "duration_s": 7200,
            "site": {"transformer_kva": 300.0, "limit_kw": 250.0, "export_limit_kw": 30.0, "phase_limit_kw": None},
            "base_load": {"resolution_s": 900, "kw": [self.base_kw] * 8},
            "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [0.5]},
            "piles": piles, "sessions": sessions, "dispatch": [],
        })


@dataclass
class V2gRun:
    case: V2gCase
    ev_kw: np.ndarray  # the EV aggregate (simulator's physics) after each tick of the setpoint window
    acks: list[dict[str, Any]]
    delivered_kwh: np.ndarray  # each car's net energy when it left (or when the run stopped)
    plans_in_window: int
    wall_s: float
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error_kw(self) -> np.ndarray:
        return np.abs(self.ev_kw - self.case.setpoint_kw)

    @property
    def within(self) -> np.ndarray:
        return self.error_kw <= self.case.tolerance * abs(self.case.setpoint_kw)

    def ticks_to_track(self) -> int | None:
        """Ticks after receipt until the aggregate is within tolerance and stays there (1 = the first tick)."""
        bad = np.flatnonzero(~self.within)
        if bad.size == 0:
            return 1
        k = int(bad[-1]) + 1
        return k + 1 if k < self.within.size else None

    def ack(self, status: str) -> dict[str, Any] | None:
        return next((a for a in self.acks if a["status"] == status), None)


def _ev_kw(site: SimulatedSite) -> float:
    _, p = site.state_now()
    return float(p.sum())


async def run_v2g_setpoint(broker: Broker, case: V2gCase | None = None) -> V2gRun:
    case = case or V2gCase()
    sc = case.scenario()
    t0 = sc.start.timestamp()
    clock = VirtualClock(t0)
    site = SimulatedSite(sc, clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id=case.site_id, mqtt_url=broker.url,
                               control={"period_s": 1.0, "budget_ms": 2000.0, "strategy": "mpc",
                                        "plan_in_thread": False})
    raw["transformer"]["margin_kw"] = 2.0
    raw["mqtt"].update({"link_loss_s": 86400.0, "telemetry_period_s": 60.0})
    cfg = parse_site_config(raw, "v2g e2e config")
    link = MqttGridLink(cfg, clock, MemoryDispatchStore())
    daemon = Daemon.build(cfg, clock=clock, link=link, with_store=False)
    grid = connect_client(broker, f"grid-{case.site_id}-{time.monotonic_ns()}")
    prefix = f"youxu/v1/{case.site_id}"
    wall0 = time.perf_counter()
    try:
        grid.subscribe(f"{prefix}/#")
        await link.start()
        deadline = time.monotonic() + 5.0
        while not link.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert link.connected, "the grid link did not connect"
        # the broker handles one client's packets in order: once the birth message is here, so are the subscriptions
        await grid.until(lambda m: m.topic == f"{prefix}/status" and m.json()["state"] == "online", 10.0)
        for p in sc.piles:  # the residents book: departure, energy, V2G consent
            grid.publish(f"{prefix}/sessions/{p.id}/request", {
                "schema": "youxu.session/1", "departure": rfc(t0 + case.departure_s), "energy_kwh": case.energy_kwh,
                "v2g": True, "min_soc": case.min_soc, "battery_kwh": 60.0, "soc_arrival": case.soc_arrival})
        await grid.until(lambda m: m.topic.endswith("/events") and m.json()["kind"] == "booking_accepted", 5.0,
                         count=case.n_cars)

        async def tick(dt_s: float = 1.0) -> None:
            await daemon.loop.tick()
            clock.set(clock.now() + dt_s)

        for _ in range(case.warmup_ticks):
            await tick()
        cmd = command(clock.now(), kind="setpoint", setpoint_kw=case.setpoint_kw, scope="ev",
                      minutes=case.setpoint_s / 60.0)
        grid.publish(f"{prefix}/dispatch", cmd)
        await grid.until_ack(cmd["command_id"], "received", 5.0)
        planner = daemon.loop.controller.planner
        plans0 = planner.plans  # type: ignore[attr-defined]
        ev: list[float] = []
        end_s = clock.now() + case.setpoint_s
        while clock.now() < end_s:
            await tick()
            ev.append(_ev_kw(site))
        plans = planner.plans - plans0  # type: ignore[attr-defined]
        while case.to_departure and clock.now() < t0 + case.departure_s + case.after_step_s:  # on to departures
            await tick(case.after_step_s)
        await asyncio.sleep(0.3)  # the last acks on their way
        return V2gRun(case=case, ev_kw=np.array(ev), acks=grid.acks(cmd["command_id"]),
                      delivered_kwh=site.phys.delivered_kwh.copy(), plans_in_window=plans,
                      wall_s=time.perf_counter() - wall0, events=grid.events())
    finally:
        await link.stop()
        daemon.close()
        await site.stop()
        grid.close()
