"""In-process simulation: a scenario's site driven step by step by a strategy.

Each step the simulated meter and piles are read into a Snapshot exactly as the daemon
would read them, the shared `Controller` decides, and the physics runs the step at the
new setpoints. Controllers are causal: they see the household load only through the
meter and sessions only once they have arrived (with the departure and energy their
drivers booked).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from controller.decision import Controller, SiteLimits
from scheduler.model import Snapshot
from sim.physics import SitePhysics
from sim.scenario import Scenario

OFFLINE = "offline"
SIM_STRATEGIES = ("uncontrolled", "fairshare", "edf", "llf", "mpc", OFFLINE)


@dataclass
class RunResult:
    scenario: Scenario
    strategy: str
    pile_kw: np.ndarray  # (n_steps, n_piles) average power in each step
    limit_kw: np.ndarray  # (n_steps,) tightest import limit in force
    sched_step: np.ndarray  # one row per session per step it was plugged in
    sched_session: np.ndarray
    sched_pile: np.ndarray
    sched_kw: np.ndarray
    delivered_kwh: np.ndarray  # per session
    plan_ms: list[float] = field(default_factory=list)
    fallbacks: int = 0
    wall_s: float = 0.0
    soc: np.ndarray | None = None  # (n_steps, n_piles) SoC of the car on each pile (NaN where none)


def tariff_fn(sc: Scenario) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Prices at epoch times, from the scenario's tariff arrays (held beyond their end)."""
    imp = np.asarray(sc.tariff.import_yuan_per_kwh, dtype=float)
    exp = np.asarray(sc.tariff.export_yuan_per_kwh or sc.tariff.import_yuan_per_kwh, dtype=float)
    epoch0, res = sc.start.timestamp(), sc.tariff.resolution_s

    def prices(t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.clip(((np.asarray(t_s, dtype=float) - epoch0) // res).astype(np.int64), 0, None)
        return imp[np.minimum(k, imp.size - 1)], exp[np.minimum(k, exp.size - 1)]

    return prices


def site_limits(sc: Scenario) -> SiteLimits:
    return SiteLimits(import_kw=sc.site.limit_kw, export_kw=sc.site.export_limit_kw,
                      phase_kw=sc.phase_limits_kw(), margin_kw=sc.site.margin_kw)


def make_controller(sc: Scenario, strategy: str, physics: SitePhysics) -> Controller:
    from sim.dispatch_arrays import scenario_dispatch_fn

    planner = None
    if strategy == "mpc":
        from controller.planning import RollingPlanner

        planner = RollingPlanner.for_simulation(sc.step_s)
    return Controller(physics.piles, site_limits(sc), strategy, tariff_fn(sc),
                      dispatch=scenario_dispatch_fn(sc), tick_s=sc.step_s, planner=planner)


def _collect(active: np.ndarray, e_kwh: np.ndarray, k: int, dt_h: float,
             rows: tuple[list, list, list, list]) -> None:
    has = np.flatnonzero(active >= 0)
    rows[0].append(np.full(has.size, k, dtype=np.int64))
    rows[1].append(active[has])
    rows[2].append(has)
    rows[3].append(e_kwh[has] / dt_h)


def run_scenario(sc: Scenario, strategy: str, progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Simulate `sc` under `strategy`; the offline yardstick is solved over the whole scenario."""
    t_wall = time.perf_counter()
    phys = SitePhysics(sc)
    n_steps, n = sc.n_steps, phys.piles.n
    base_phase = sc.base_phase_kw()
    epoch0 = sc.start.timestamp()
    dt_h = sc.step_s / 3600.0
    pile_kw = np.zeros((n_steps, n))
    soc = np.full((n_steps, n), np.nan)
    limit_kw = np.zeros(n_steps)
    rows: tuple[list, list, list, list] = ([], [], [], [])
    plan_ms: list[float] = []
    fallbacks = 0
    schedule = None
    controller = None
    if strategy == OFFLINE:
        from sim.offline import offline_schedule

        t0 = time.perf_counter()
        schedule = offline_schedule(sc)  # (n_sessions, n_steps) kW
        plan_ms.append((time.perf_counter() - t0) * 1e3)
    else:
        controller = make_controller(sc, strategy, phys)
    from sim.dispatch_arrays import scenario_dispatch_fn

    dispatch = scenario_dispatch_fn(sc)
    for k in range(n_steps):
        t_s = k * sc.step_s
        active = phys.active_sessions(t_s)
        if schedule is not None:
            has = active >= 0
            phys.setpoint_kw = np.where(has, schedule[np.maximum(active, 0), k], 0.0)
            d = dispatch(np.array([epoch0 + t_s]))
            limit_kw[k] = min(sc.site.limit_kw, float(d.site_import_max_kw[0]))
        else:
            drawn = phys.power_kw(t_s, active)
            snap = Snapshot(
                t_s=epoch0 + t_s,
                meter_kw=float(base_phase[k].sum() + drawn.sum()),
                meter_phase_kw=base_phase[k] + drawn @ phys.piles.phase_share,
                pile_kw=drawn,
                pile_online=np.ones(n, dtype=bool),
                pile_plugged=active >= 0,
                sessions=phys.known_sessions(t_s, epoch0, active),
            )
            dec = controller.decide(snap)
            phys.setpoint_kw = dec.setpoints_kw
            limit_kw[k] = dec.limit_kw
            if dec.planned:
                plan_ms.append(dec.plan_ms)
                fallbacks += int(dec.fallback)
        act, e = phys.advance(t_s, sc.step_s)
        pile_kw[k] = e / dt_h
        has = act >= 0
        s = np.maximum(act, 0)
        soc[k] = np.where(has, phys.s_soc0[s] + phys.delivered_kwh[s] / phys.s_bat[s], np.nan) if phys.session_ids \
            else np.nan
        _collect(act, e, k, dt_h, rows)
        if progress is not None and (k % 60 == 0 or k == n_steps - 1):
            progress(k + 1, n_steps)
    cat = [np.concatenate(r) if r else np.zeros(0) for r in rows]
    return RunResult(
        scenario=sc, strategy=strategy, pile_kw=pile_kw, limit_kw=limit_kw,
        sched_step=cat[0].astype(np.int64), sched_session=cat[1].astype(np.int64),
        sched_pile=cat[2].astype(np.int64), sched_kw=cat[3],
        delivered_kwh=phys.delivered_kwh.copy(), plan_ms=plan_ms, fallbacks=fallbacks,
        wall_s=time.perf_counter() - t_wall, soc=soc,
    )
