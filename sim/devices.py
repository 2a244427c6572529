"""A scenario's meter and piles served as Modbus TCP devices, with physics on a clock.

The meter serves the Eastron SDM630 map (so the daemon reads it exactly as a real meter);
each pile serves the `youxu-sim-pile` map. Physics advance to the clock's time on every
request: the meter shows household load plus what the piles draw; a pile draws
min(setpoint, what the car accepts); written setpoints act at once; a pile whose failsafe
timeout passes without a write falls back to its failsafe power.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from pymodbus.server import ModbusTcpServer

from youxu.drivers.clock import Clock
from youxu.drivers.profiles import load_profile
from youxu.drivers.registers import encode_many_canonical
from youxu.sim.engine import RunResult
from youxu.sim.physics import SitePhysics
from youxu.sim.register_image import RegisterImage, serve_image
from youxu.sim.scenario import Scenario

log = logging.getLogger(__name__)

METER_UNIT = 1
STATUS_CODE = {"available": 0, "connected": 1, "charging": 2, "discharging": 3, "fault": 4}
MAX_UNITS_PER_PORT = 200


@dataclass(frozen=True)
class DeviceAddress:
    url: str
    unit: int


class SimulatedSite:
    def __init__(self, sc: Scenario, clock: Clock, voltage_v: float = 230.0) -> None:
        self.sc = sc
        self.clock = clock
        self.voltage_v = voltage_v
        self.phys = SitePhysics(sc)
        self.epoch0 = sc.start.timestamp()
        n, n_steps = self.phys.piles.n, sc.n_steps
        self.base_phase = sc.base_phase_kw()
        self.step_energy = np.zeros((n_steps, n))
        self.step_session = np.full((n_steps, n), -1, dtype=np.int64)
        self.t_last = 0.0
        self.import_kwh = 0.0
        self.export_kwh = 0.0
        self.failsafe_kw = np.zeros(n)
        self.failsafe_timeout_s = np.zeros(n)
        self.last_comm_s = np.zeros(n)
        self.meter_fault = False
        self.requests = 0
        self._cache_t = -1.0
        speed = getattr(clock, "speed", 1.0)
        # physics are recomputed at most this often (simulated s); writes always take effect at once
        # (energy is integrated exactly whatever this is: power only changes on writes, arrivals and departures)
        self.resolution_s = 0.0 if speed == float("inf") else min(0.2 * speed, 5.0)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self._table: dict[str, np.ndarray] | None = None
        self._table_for: tuple[np.ndarray, np.ndarray] | None = None
        self.meter_image = RegisterImage(load_profile("sdm630"))
        pile_profile = load_profile("youxu-sim-pile")
        self.pile_images = [RegisterImage(pile_profile) for _ in range(n)]
        for i, img in enumerate(self.pile_images):
            img.set("max_power", float(self.phys.piles.max_kw[i]))
            img.set("max_discharge", float(self.phys.piles.max_discharge_kw[i]))
        self.servers: list[ModbusTcpServer] = []
        self.tasks: list[asyncio.Task] = []
        self.addresses: dict[str, DeviceAddress] = {}

    # ---- time and physics ------------------------------------------------------------
    def sim_t(self) -> float:
        return min(max(self.clock.now() - self.epoch0, 0.0), float(self.sc.duration_s))

    def advance_to(self, t: float) -> None:
        step = self.sc.step_s
        while self.t_last < t - 1e-9:
            k = min(int(self.t_last // step), self.sc.n_steps - 1)
            seg_end = min(t, (k + 1) * step)
            dt = seg_end - self.t_last
            self._apply_failsafe(self.t_last)
            active, e = self.phys.advance(self.t_last, dt)
            self.step_energy[k] += e
            has = active >= 0
            self.step_session[k, has] = active[has]
            total_kw = float(self.base_phase[k].sum() + e.sum() * 3600.0 / max(dt, 1e-9))
            self.import_kwh += max(total_kw, 0.0) * dt / 3600.0
            self.export_kwh += max(-total_kw, 0.0) * dt / 3600.0
            self.t_last = seg_end
            self._cache = None

    def _apply_failsafe(self, t: float) -> None:
        lost = (self.failsafe_timeout_s > 0) & (t - self.last_comm_s > self.failsafe_timeout_s)
        if lost.any():
            self.phys.setpoint_kw = np.where(lost, self.failsafe_kw, self.phys.setpoint_kw)

    def state_now(self) -> tuple[np.ndarray, np.ndarray]:
        """(active session per pile, power per pile) at the clock's time."""
        t = self.sim_t()
        if self._cache is not None and abs(t - self._cache_t) <= self.resolution_s:
            return self._cache
        self.advance_to(t)
        if self._cache is None or abs(t - self._cache_t) > 1e-6:
            self._apply_failsafe(t)
            active = self.phys.active_sessions(t) if t < self.sc.duration_s else np.full(self.phys.piles.n, -1)
            self._cache = (active, self.phys.power_kw(t, active))
            self._cache_t = t
        return self._cache

    # ---- register refresh ------------------------------------------------------------
    def refresh_meter(self) -> None:
        self.requests += 1
        if self.meter_fault:
            raise OSError("meter fault injected")
        _, p = self.state_now()
        k = min(int(self.sim_t() // self.sc.step_s), self.sc.n_steps - 1)
        phase_kw = self.base_phase[k] + p @ self.phys.piles.phase_share
        img = self.meter_image
        for j, ph in enumerate(("l1", "l2", "l3")):
            v = self.voltage_v + (j - 1) * 0.7
            img.set(f"voltage_{ph}", v)
            img.set(f"current_{ph}", abs(phase_kw[j]) * 1000.0 / v)
            img.set(f"power_{ph}", float(phase_kw[j]))
        img.set("power", float(phase_kw.sum()))
        img.set("import_energy", self.import_kwh)
        img.set("export_energy", self.export_kwh)

    def pile_table(self) -> dict[str, np.ndarray]:
        """Every pile's register words for the present state, encoded for all piles at once."""
        state = self.state_now()
        if self._table is not None and self._table_for is state:
            return self._table
        active, p = state
        has = active >= 0
        s = np.maximum(active, 0)
        ph = self.phys
        status = np.where(p > 0.05, STATUS_CODE["charging"],
                          np.where(p < -0.05, STATUS_CODE["discharging"], STATUS_CODE["connected"]))
        status = np.where(has, status, STATUS_CODE["available"])
        status = np.where(ph.pile_fault, STATUS_CODE["fault"], status)
        energy = np.where(has, ph.delivered_kwh[s], 0.0) if ph.session_ids else np.zeros(p.size)
        soc = np.where(has, np.clip(ph.s_soc0[s] + ph.delivered_kwh[s] / ph.s_bat[s], 0, 1) * 100.0, 0.0) \
            if ph.session_ids else np.zeros(p.size)
        regs = self.pile_images[0].registers if self.pile_images else {}
        table = {name: encode_many_canonical(vals, regs[name]) for name, vals in (
            ("status", status), ("power", p), ("energy", energy), ("setpoint", ph.setpoint_kw), ("soc", soc))}
        table["soc"][~has] = 0xFFFF  # no car: state of charge unknown
        self._table, self._table_for = table, state
        return table

    def refresh_pile(self, i: int) -> None:
        self.requests += 1
        for name, words in self.pile_table().items():
            self.pile_images[i].set_words(name, words[i].tolist())

    def on_pile_write(self, i: int, name: str, value: float) -> None:
        t = self.sim_t()
        self.advance_to(t)
        self.last_comm_s[i] = t
        if name == "setpoint":
            self.phys.setpoint_kw[i] = value
        elif name == "failsafe_current":
            self.failsafe_kw[i] = value
        elif name == "failsafe_timeout":
            self.failsafe_timeout_s[i] = value
        self._cache = None

    # ---- serving ---------------------------------------------------------------------
    def _pile_device(self, i: int, unit: int):
        return serve_image(self.pile_images[i], unit, on_read=lambda: self.refresh_pile(i),
                           on_write=lambda name, v: self.on_pile_write(i, name, v))

    async def start(self, host: str = "127.0.0.1", port: int = 5020, layout: str = "units",
                    units_per_port: int = MAX_UNITS_PER_PORT) -> None:
        """Serve the meter (unit 1) and the piles: up to `units_per_port` piles behind each port, the first
        port's after the meter (`units`, as behind RS-485 gateways), or each pile on a port of its own after
        the meter's (`ports`)."""
        if not 1 <= units_per_port <= MAX_UNITS_PER_PORT:
            raise ValueError(f"units_per_port must be 1..{MAX_UNITS_PER_PORT} (got {units_per_port})")
        meter_dev = serve_image(self.meter_image, METER_UNIT, on_read=self.refresh_meter)
        groups: list[tuple[int, list]] = []
        pile_ids = self.phys.piles.ids
        if layout == "ports":
            groups.append((port, [meter_dev]))
            self.addresses["meter"] = DeviceAddress(f"modbus-tcp://{host}:{port}", METER_UNIT)
            for i, pid in enumerate(pile_ids):
                groups.append((port + 1 + i, [self._pile_device(i, 1)]))
                self.addresses[pid] = DeviceAddress(f"modbus-tcp://{host}:{port + 1 + i}", 1)
        elif layout == "units":
            devs = [meter_dev]
            self.addresses["meter"] = DeviceAddress(f"modbus-tcp://{host}:{port}", METER_UNIT)
            p, unit, on_port = port, METER_UNIT + 1, 0
            for i, pid in enumerate(pile_ids):
                if on_port == units_per_port:
                    groups.append((p, devs))
                    devs, p, unit, on_port = [], p + 1, 1, 0
                devs.append(self._pile_device(i, unit))
                self.addresses[pid] = DeviceAddress(f"modbus-tcp://{host}:{p}", unit)
                unit += 1
                on_port += 1
            groups.append((p, devs))
        else:
            raise ValueError("layout must be 'units' or 'ports'")
        for prt, devs in groups:
            srv = ModbusTcpServer(devs, address=(host, prt))
            self.servers.append(srv)
            self.tasks.append(asyncio.create_task(srv.serve_forever()))
        await asyncio.sleep(0.05)
        for srv, task in zip(self.servers, self.tasks, strict=True):
            if task.done():
                exc = task.exception()
                raise OSError(f"cannot serve on {srv.comm_params.source_address}: {exc}")

    async def stop(self) -> None:
        for srv in self.servers:
            await srv.shutdown()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.servers, self.tasks = [], []

    # ---- what happened ---------------------------------------------------------------
    def outcome(self) -> dict[str, np.ndarray]:
        """What happened, as plain arrays (picklable, to hand across processes)."""
        self.advance_to(float(self.sc.duration_s))
        return {"step_energy": self.step_energy, "step_session": self.step_session,
                "delivered_kwh": self.phys.delivered_kwh.copy(), "requests": np.array([self.requests])}

    def result(self, strategy: str, limit_kw: np.ndarray, plan_ms: list[float], fallbacks: int,
               wall_s: float) -> RunResult:
        return outcome_result(self.sc, self.outcome(), strategy, limit_kw, plan_ms, fallbacks, wall_s)


def outcome_result(sc: Scenario, out: dict[str, np.ndarray], strategy: str, limit_kw: np.ndarray,
                   plan_ms: list[float], fallbacks: int, wall_s: float) -> RunResult:
    dt_h = sc.step_s / 3600.0
    energy, session = out["step_energy"], out["step_session"]
    k_idx, p_idx = np.nonzero(session >= 0)
    return RunResult(
        scenario=sc, strategy=strategy, limit_kw=limit_kw,
        sched_step=k_idx.astype(np.int64), sched_session=session[k_idx, p_idx],
        sched_pile=p_idx.astype(np.int64), sched_kw=energy[k_idx, p_idx] / dt_h,
        delivered_kwh=out["delivered_kwh"], plan_ms=plan_ms, fallbacks=fallbacks, wall_s=wall_s,
    )
