"""In-process simulation: a scenario's site driven step by step by a strategy.

Each step the simulated meter and piles are read into a Snapshot exactly as the daemon
would read them, the shared `Controller` decides, and the physics runs the step at the
new setpoints. Controllers are causal: they see the household load only through the
meter and sessions only once they have arrived (with the departure and energy their
drivers booked).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from youxu.controller.gridlink import DispatchLimits
from youxu.scheduler import thermal
from youxu.scheduler.decision import Controller, SiteLimits
from youxu.scheduler.model import Snapshot
from youxu.scheduler.thermal import ThermalNow
from youxu.sim.physics import PlugTimeline, SitePhysics
from youxu.sim.scenario import Scenario

OFFLINE = "offline"
SIM_STRATEGIES = ("uncontrolled", "fairshare", "edf", "llf", "mpc", OFFLINE)
PROGRESS_EVERY = 60  # steps between progress reports
ROWS_EVERY = 1440  # steps between handing schedule rows on
RowsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


@dataclass
class RunResult:
    scenario: Scenario
    strategy: str
    limit_kw: np.ndarray  # (n_steps,) tightest import limit in force
    sched_step: np.ndarray  # one row per session per step it was plugged in, by step then pile
    sched_session: np.ndarray
    sched_pile: np.ndarray
    sched_kw: np.ndarray  # average power the session drew in the step
    delivered_kwh: np.ndarray  # per session
    plan_ms: list[float] = field(default_factory=list)
    fallbacks: int = 0
    wall_s: float = 0.0

    @functools.cached_property
    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per step: base kW, EV kW, total kW and per-phase total kW (`youxu.sim.kpis.site_series`), computed once."""
        from youxu.sim.kpis import site_series

        return site_series(self.scenario, self.sched_step, self.sched_pile, self.sched_kw)


def tariff_fn(sc: Scenario) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Prices at epoch times, from the scenario's tariff arrays (held beyond their end)."""
    imp = np.asarray(sc.tariff.import_yuan_per_kwh, dtype=float)
    exp = np.asarray(sc.tariff.export_yuan_per_kwh or sc.tariff.import_yuan_per_kwh, dtype=float)
    epoch0, res = sc.start.timestamp(), sc.tariff.resolution_s

    def prices(t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t_s, dtype=float)
        if t.size == 1:  # one time: index in Python, no array arithmetic
            k = max(int((float(t.reshape(-1)[0]) - epoch0) // res), 0)
            shape = t.shape
            return (np.full(shape, imp[min(k, imp.size - 1)]), np.full(shape, exp[min(k, exp.size - 1)]))
        k = np.clip(((t - epoch0) // res).astype(np.int64), 0, None)
        return imp[np.minimum(k, imp.size - 1)], exp[np.minimum(k, exp.size - 1)]

    return prices


def site_limits(sc: Scenario) -> SiteLimits:
    return SiteLimits(import_kw=sc.site.limit_kw, export_kw=sc.site.export_limit_kw,
                      phase_kw=sc.phase_limits_kw(), margin_kw=sc.site.margin_kw)


def make_controller(sc: Scenario, strategy: str, physics: SitePhysics) -> Controller:
    planner = None
    if strategy == "mpc":
        from youxu.scheduler.rolling import RollingPlanner

        planner = RollingPlanner.for_simulation(sc.step_s)
        t_s, phase_kw = sc.history_phase_kw()
        if t_s.size:  # the meter's history before the start, as a running daemon reads it back from its database
            planner.forecaster.observe_many(sc.epoch_s(0.0) + t_s, phase_kw.sum(axis=1), phase_kw)
    # the thermal limit is the optimizer's: the heuristics see only the kW cap, as they would in practice
    from youxu.sim.thermal import thermal_site

    th = thermal_site(sc, window_s=planner.cfg.step_s) if planner is not None else None
    return Controller(physics.piles, site_limits(sc), strategy, tariff_fn(sc),
                      dispatch=PiecewiseDispatch(sc), tick_s=sc.step_s, planner=planner, thermal=th)


class PiecewiseDispatch:
    """The scenario's dispatch limits, computed once per interval between command boundaries.

    Nothing in force changes between two boundaries (period starts, ends, cancels), so a
    one-time query returns the interval's memoised limits (read-only arrays); horizons of
    several times go to the arbitration directly.
    """

    def __init__(self, sc: Scenario) -> None:
        from youxu.sim.dispatch_arrays import scenario_commands, scenario_dispatch_fn

        self._fn = scenario_dispatch_fn(sc)
        in_force = scenario_commands(sc) if sc.dispatch else []
        edges = [f.cmd.period_starts_s() for f in in_force] + [np.array([min(f.end_s, f.cmd.end_s)]) for f in in_force]
        edges_s = np.unique(np.concatenate(edges)) if edges else np.zeros(0)
        self._edges_s = edges_s[np.isfinite(edges_s)]
        self._memo: dict[int, DispatchLimits] = {}

    def __call__(self, t_s: np.ndarray) -> DispatchLimits:
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        if t.size != 1:
            return self._fn(t)
        segment = int(np.searchsorted(self._edges_s, t[0], side="right"))
        hit = self._memo.get(segment)
        if hit is None:
            hit = self._fn(t)
            for arr in (hit.site_import_max_kw, hit.site_export_max_kw, hit.ev_import_max_kw, hit.ev_export_max_kw,
                        hit.setpoint_kw):
                arr.flags.writeable = False
            self._memo[segment] = hit
        return hit


def schedule_row_count(sc: Scenario) -> int:
    """Rows of the schedule: a session has one for every step starting inside [arrival, departure)."""
    arr = np.array([s.arrival_s for s in sc.sessions], dtype=np.int64)
    dep = np.array([s.departure_s for s in sc.sessions], dtype=np.int64)
    return int((-(-dep // sc.step_s) - -(-arr // sc.step_s)).sum())


class ScheduleRows:
    """The rows of schedule.csv, filled step by step into arrays sized for the whole run."""

    def __init__(self, sc: Scenario) -> None:
        n_rows = schedule_row_count(sc)
        self.step = np.zeros(n_rows, dtype=np.int32)
        self.session = np.zeros(n_rows, dtype=np.int32)
        self.pile = np.zeros(n_rows, dtype=np.int32)
        self.kw = np.zeros(n_rows)
        self.n = 0
        self.flushed = 0

    def add(self, k: int, active: np.ndarray, kw: np.ndarray) -> None:
        """The step's row for every plugged-in session, in pile order."""
        piles = np.flatnonzero(active >= 0)
        a, b = self.n, self.n + piles.size
        self.step[a:b] = k
        self.session[a:b] = active[piles]
        self.pile[a:b] = piles
        self.kw[a:b] = kw[piles]
        self.n = b

    def flush(self, on_rows: RowsFn | None) -> None:
        """Hand the rows added since the last flush to `on_rows` (step, session, kW), if any."""
        if on_rows is not None and self.n > self.flushed:
            a, b = self.flushed, self.n
            on_rows(self.step[a:b], self.session[a:b], self.kw[a:b])
            self.flushed = b


def run_scenario(sc: Scenario, strategy: str, progress: Callable[[int, int], None] | None = None,
                 on_rows: RowsFn | None = None, until_s: int | None = None) -> RunResult:
    """Simulate `sc` under `strategy`; the offline yardstick is solved over the whole scenario.

    `on_rows` receives the schedule rows (step, session, kW; by step then pile) as they become
    final, a block every `ROWS_EVERY` steps. With `until_s` the run stops there: the steps from it
    on are not simulated (no rows, zero limits), though the scenario (its sessions' departures,
    what the controller is told) goes on; a part of a long run (`youxu.sim.chunked`)."""
    t_wall = time.perf_counter()
    phys = SitePhysics(sc)
    n_steps, n = sc.n_steps, phys.piles.n
    if until_s is not None:
        n_steps = min(n_steps, -(-int(until_s) // sc.step_s))
    base_phase = sc.base_phase_kw()
    base_total = base_phase.sum(axis=1)
    share = phys.piles.phase_share
    online = np.ones(n, dtype=bool)
    online.flags.writeable = False  # one array for every snapshot
    epoch0 = sc.start.timestamp()
    dt_h = sc.step_s / 3600.0
    limit_kw = np.zeros(sc.n_steps)
    rows = ScheduleRows(sc)
    plan_ms: list[float] = []
    fallbacks = 0
    schedule = None
    controller = None
    if strategy == OFFLINE:
        from youxu.sim.dispatch_arrays import scenario_dispatch_fn
        from youxu.sim.offline import offline_schedule

        t0 = time.perf_counter()
        schedule = offline_schedule(sc)  # (n_sessions, n_steps) kW
        plan_ms.append((time.perf_counter() - t0) * 1e3)
        d = scenario_dispatch_fn(sc)(epoch0 + sc.step_times_s()[:n_steps])
        limit_kw[:n_steps] = np.minimum(sc.site.limit_kw, d.site_import_max_kw)
    else:
        controller = make_controller(sc, strategy, phys)
    plugs = PlugTimeline(phys)
    params = sc.site.thermal_params()
    ambient = sc.ambient_per_step_c()
    heat = None
    if params is not None:
        from youxu.sim.thermal import initial_state

        heat = initial_state(sc, params)
    for k in range(n_steps):
        t_s = k * sc.step_s
        active = plugs.at(t_s)
        if schedule is not None:
            phys.setpoint_kw = np.where(active >= 0, schedule[np.maximum(active, 0), k], 0.0)
        else:
            drawn = phys.power_kw(t_s, active)
            snap = Snapshot(
                t_s=epoch0 + t_s,
                meter_kw=float(base_total[k] + drawn.sum()),
                meter_phase_kw=base_phase[k] + drawn @ share,
                pile_kw=drawn,
                pile_online=online,
                pile_plugged=active >= 0,
                sessions=phys.known_sessions(t_s, epoch0, active),
                thermal=None if heat is None else ThermalNow(heat, float(ambient[k])),
            )
            dec = controller.decide(snap)
            phys.setpoint_kw = dec.setpoints_kw
            limit_kw[k] = dec.limit_kw
            if dec.planned:
                plan_ms.append(dec.plan_ms)
                fallbacks += int(dec.fallback)
        act, e = phys.advance(t_s, sc.step_s, active)
        rows.add(k, act, e / dt_h)
        if heat is not None and params is not None:
            load_kw = float(base_total[k] + e.sum() / dt_h)
            heat = thermal.step(params, heat, params.load_factor(load_kw), float(ambient[k]), float(sc.step_s))
        if progress is not None and (k % PROGRESS_EVERY == 0 or k == n_steps - 1):
            progress(k + 1, n_steps)
        if k % ROWS_EVERY == ROWS_EVERY - 1:
            rows.flush(on_rows)
    rows.flush(on_rows)
    m = rows.n
    return RunResult(
        scenario=sc, strategy=strategy, limit_kw=limit_kw,
        sched_step=rows.step[:m], sched_session=rows.session[:m], sched_pile=rows.pile[:m], sched_kw=rows.kw[:m],
        delivered_kwh=phys.delivered_kwh.copy(), plan_ms=plan_ms, fallbacks=fallbacks,
        wall_s=time.perf_counter() - t_wall,
    )
