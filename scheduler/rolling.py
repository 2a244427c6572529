"""The rolling-horizon planner as the fast loop uses it (strategy `mpc`).

Every planning period — and at once when a car arrives or leaves — the optimizer plans the
next horizon from the snapshot, the household-load forecast, the tariff and the dispatch
commands in force. Each tick between plans follows the plan's step for the current time
through the dead band (rotating minimum-power runs, carrying each session's energy debt),
against the headroom measured now; the safety layer has the last word after that.

In the daemon the solve runs in a worker thread so a tick never waits for it: until a new
plan is ready the previous one is followed. In simulation it runs inline, deterministically.
A failed or late solve gives the least-laxity-first fallback for the ticks it covers.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from youxu.scheduler import heuristics
from youxu.scheduler.arrivals import ArrivalModel
from youxu.scheduler.deadband import DeadbandState, Headroom, to_setpoints
from youxu.scheduler.forecast import BaseLoadForecaster
from youxu.scheduler.lp_warm import WarmStart
from youxu.scheduler.model import ExpectedArrivals, HardLimits, Plan, PlanInput, Snapshot
from youxu.scheduler.planner import plan_mpc

if TYPE_CHECKING:
    from youxu.scheduler.decision import Controller

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanningConfig:
    horizon_s: float = 86400.0
    step_s: float = 900.0
    period_s: float = 60.0
    time_limit_ms: float = 200.0
    wear_yuan_per_kwh: float = 0.05
    # a car with less slack than this (time left minus what it still needs at full power) is charged at full power
    # whatever the plan says, as least-laxity-first would: the plan's model (forecast, the cars to come) may be
    # wrong, the measured room at this tick is not; the dead band and the safety layer keep every limit
    laxity_floor_s: float = 900.0
    threaded: bool = False  # solve in a worker thread (daemon) or inline (simulation)


DISPATCH_SAMPLE_S = 60.0  # resolution at which the horizon is searched for dispatch changes
MIN_STEP_S = 1.0  # no plan step is shorter


def step_grid(t0_s: float, horizon_s: float, step_s: float, breaks_s: np.ndarray | None = None) -> np.ndarray:
    """Step lengths from t0: a first step to the next step boundary, then whole steps; every
    time in `breaks_s` (where a dispatch command starts, changes or ends) also starts a step."""
    first = step_s - (t0_s % step_s)
    if first < 0.25 * step_s:  # too short to be worth a step of its own
        first += step_s
    n_rest = max(0, int(np.ceil((horizon_s - first) / step_s)))
    edges = t0_s + np.concatenate([[0.0], first + step_s * np.arange(n_rest + 1)])
    edges = edges[edges < t0_s + horizon_s + step_s]
    if breaks_s is not None and breaks_s.size:
        inside = breaks_s[(breaks_s > t0_s) & (breaks_s < edges[-1])]
        edges = np.unique(np.concatenate([edges, inside]))
        # a break a rounding error away from a step boundary is that boundary (no step of 1e-12 s)
        edges = edges[np.concatenate([[True], np.diff(edges) >= MIN_STEP_S])]
    return np.diff(edges)


def dispatch_breaks(ctl: Controller, t0_s: float, horizon_s: float) -> np.ndarray:
    """Times (epoch s) within the horizon where what dispatch asks for changes."""
    t = t0_s + DISPATCH_SAMPLE_S * np.arange(int(horizon_s // DISPATCH_SAMPLE_S) + 1)
    d = ctl.dispatch(t)
    cols = np.stack([d.site_import_max_kw, d.site_export_max_kw, d.ev_import_max_kw, d.ev_export_max_kw,
                     d.setpoint_kw])
    cols = np.where(np.isnan(cols), -1e18, np.where(np.isinf(cols), 1e18, cols))
    change = np.flatnonzero((np.diff(cols, axis=1) != 0).any(axis=0)) + 1
    return t[change]


class RollingPlanner:
    def __init__(self, cfg: PlanningConfig, forecaster: BaseLoadForecaster | None = None,
                 arrivals: ArrivalModel | None = None) -> None:
        self.cfg = cfg
        self.forecaster = forecaster or BaseLoadForecaster()
        self.arrivals = arrivals or ArrivalModel()  # the cars still to come: the plan keeps room for them
        self.plan: Plan | None = None
        self.plan_t0_s = 0.0
        self.plan_step_end_s = np.zeros(0)
        self.plan_sessions: tuple[str | None, ...] = ()
        self.plan_commands: tuple[str, ...] = ()
        self.deadband: DeadbandState | None = None
        self.warm = WarmStart()  # the last basis: the next solve starts from it (one solve at a time)
        self.last_tick_s: float | None = None
        self.plans = 0
        self.fallbacks = 0
        self._pending: Future | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="youxu-plan") if cfg.threaded else None

    @classmethod
    def for_simulation(cls, tick_s: float, period_s: float | None = None) -> RollingPlanner:
        return cls(PlanningConfig(period_s=period_s or max(tick_s, 300.0), time_limit_ms=2000.0, threaded=False))

    # ---- the plan's input --------------------------------------------------------------
    def plan_input(self, snap: Snapshot, ctl: Controller) -> PlanInput:
        steps = step_grid(snap.t_s, self.cfg.horizon_s, self.cfg.step_s,
                          dispatch_breaks(ctl, snap.t_s, self.cfg.horizon_s))
        starts = snap.t_s + np.concatenate([[0.0], np.cumsum(steps)[:-1]])
        ends = starts + steps
        base, base_phase = self.forecaster.forecast(ends, steps)
        spread, phase_spread = self.forecaster.spread(ends, steps)
        # the measured household load is the best forecast for the step we are in
        fixed = snap.assumed_kw
        now_phase = snap.base_phase_kw(ctl.piles.phase_share) + fixed @ ctl.piles.phase_share
        base = base.copy()
        base_phase = base_phase.copy()
        base[0] = max(base[0], float(now_phase.sum()))
        base_phase[0] = np.maximum(base_phase[0], now_phase)
        d_start, d_end = ctl.dispatch(starts), ctl.dispatch(np.maximum(ends - 1.0, starts))
        site = ctl.site
        site_import = np.full(steps.size, site.import_kw)
        if ctl.thermal is not None and snap.thermal is not None:
            # the transformer's thermal limit over the horizon, from the state now and the forecast load
            site_import = ctl.thermal.limits_kw(snap.thermal, snap.t_s, steps, base, site.import_kw)
            site_import[0] = min(site_import[0], ctl.site_import_kw(snap.thermal, float(base[0])))
        imp_price, exp_price = ctl.tariff(starts)
        return PlanInput(
            t0_s=snap.t_s,
            step_s=steps,
            base_kw=base,
            base_phase_kw=base_phase,
            import_limit_kw=np.minimum(site_import, np.minimum(d_start.site_import_max_kw,
                                                                  d_end.site_import_max_kw)) - site.margin_kw,
            export_limit_kw=np.maximum(0.0, np.minimum(site.export_kw, np.minimum(d_start.site_export_max_kw,
                                                                                  d_end.site_export_max_kw))),
            phase_limit_kw=site.phase_kw,
            ev_import_limit_kw=np.minimum(d_start.ev_import_max_kw, d_end.ev_import_max_kw) - fixed.sum(),
            ev_export_limit_kw=np.maximum(0.0, np.minimum(d_start.ev_export_max_kw, d_end.ev_export_max_kw)),
            setpoint_kw=d_start.setpoint_kw,
            setpoint_scope=d_start.setpoint_scope,
            import_price=imp_price,
            export_price=exp_price,
            piles=ctl.piles,
            sessions=snap.sessions,
            pile_online=snap.controllable,
            wear_yuan_per_kwh=self.cfg.wear_yuan_per_kwh,
            base_spread_kw=spread,
            base_phase_spread_kw=phase_spread,
            expected_arrivals=self._expected(snap, ctl, float(ends[-1]) if ends.size else snap.t_s),
        )

    def _expected(self, snap: Snapshot, ctl: Controller, horizon_end_s: float) -> ExpectedArrivals | None:
        """The reserve for the cars still to come; none if the model fails (the plan is then as without it)."""
        try:
            return self.arrivals.expected(snap.t_s, horizon_end_s, ctl.piles, snap.sessions, snap.controllable)
        except (ValueError, FloatingPointError, IndexError) as exc:
            log.warning("arrival model failed, planning without a reserve for the cars to come: %s", exc)
            return None

    # ---- when to plan ------------------------------------------------------------------
    def _due(self, snap: Snapshot, commands: tuple[str, ...]) -> bool:
        if self.plan is None:
            return True
        if snap.t_s - self.plan_t0_s >= self.cfg.period_s or snap.t_s >= self.plan_step_end_s[-1]:
            return True
        # a car came or went, or the grid's commands in force changed
        return tuple(snap.sessions.ids) != self.plan_sessions or commands != self.plan_commands

    def _adopt(self, plan: Plan, inp: PlanInput, commands: tuple[str, ...]) -> None:
        self.plan = plan
        self.plan_commands = commands
        self.plan_t0_s = inp.t0_s
        self.plan_step_end_s = inp.step_end_s
        self.plan_sessions = tuple(inp.sessions.ids)
        self.plans += 1
        self.fallbacks += int(plan.fallback)
        if plan.fallback:
            log.warning("planner fell back to least-laxity-first: %s", plan.status)

    def _solve(self, inp: PlanInput) -> Plan:
        return plan_mpc(inp, time_limit_ms=self.cfg.time_limit_ms, warm=self.warm)

    # ---- every tick ----------------------------------------------------------------------
    def setpoints(self, snap: Snapshot, limits: HardLimits, ctl: Controller) -> tuple[np.ndarray, Plan | None, bool]:
        """(setpoints kW, the plan followed, whether a new plan was adopted this tick)."""
        fixed = snap.assumed_kw
        self.forecaster.observe(snap.t_s, snap.base_kw + fixed.sum(),
                                snap.base_phase_kw(ctl.piles.phase_share) + fixed @ ctl.piles.phase_share)
        try:
            self.arrivals.observe(snap.t_s, snap.sessions, snap.controllable)
        except (ValueError, FloatingPointError, IndexError) as exc:
            log.warning("arrival model could not learn from this snapshot: %s", exc)
        planned = False
        commands = tuple(ctl.dispatch(np.array([snap.t_s])).active_command_ids)
        if self._pending is not None and self._pending.done():
            plan, inp, cmds = self._pending.result()
            self._pending = None
            self._adopt(plan, inp, cmds)
            planned = True
        if self._due(snap, commands) and self._pending is None:
            inp = self.plan_input(snap, ctl)
            if self._pool is None:
                self._adopt(self._solve(inp), inp, commands)
                planned = True
            else:
                self._pending = self._pool.submit(lambda i=inp, c=commands: (self._solve(i), i, c))
                if self.plan is None or tuple(snap.sessions.ids) != self.plan_sessions or \
                        commands != self.plan_commands:
                    # nothing valid to follow yet: this tick is planned by the fallback
                    self._adopt(self._tick_fallback(snap, limits, ctl), inp, commands)
        step = ctl.single_step_input(snap, limits)
        if self.plan is None or self.plan.fallback:
            plan_kw = heuristics.llf(step).first_kw
        else:
            k = int(np.searchsorted(self.plan_step_end_s, snap.t_s, side="right"))
            k = min(k, self.plan.power_kw.shape[1] - 1)
            plan_kw = self.plan.power_kw[:, k]
        slack_s = self._slack_s(snap, ctl)
        plan_kw = self._laxity_floor(plan_kw, snap, slack_s, ctl)
        if self.deadband is None:
            self.deadband = DeadbandState(ctl.piles.n)
        dt_s = ctl.tick_s if self.last_tick_s is None else min(max(snap.t_s - self.last_tick_s, 0.0), 10 * ctl.tick_s)
        self.last_tick_s = snap.t_s
        s = snap.sessions
        tick_s = dt_s or ctl.tick_s
        leave_s = np.where(s.active, s.departure_s - snap.t_s, np.inf)
        # a car still plugged in after its declared departure stays for the whole tick
        presence = np.where(leave_s > 0, np.clip(leave_s / tick_s, 0.0, 1.0), 1.0)
        sp = to_setpoints(plan_kw, ctl.piles, s.ids, Headroom.of(step), tick_s, self.deadband,
                          online=step.pile_online, presence=presence, leave_s=np.maximum(leave_s, 0.0),
                          car_max_kw=s.car_max_kw, slack_s=slack_s)
        return sp, self.plan, planned

    @staticmethod
    def _slack_s(snap: Snapshot, ctl: Controller) -> np.ndarray:
        """(n,) each car's laxity: time left less the time it still needs at full power (inf: no car)."""
        s = snap.sessions
        full_kw = np.minimum(ctl.piles.max_kw, s.car_max_kw)
        with np.errstate(divide="ignore", invalid="ignore"):
            need_s = np.where(full_kw > 0, s.remaining_kwh / full_kw * 3600.0, np.inf)
        return np.where(s.active, s.departure_s - snap.t_s - need_s, np.inf)

    def _laxity_floor(self, plan_kw: np.ndarray, snap: Snapshot, slack_s: np.ndarray, ctl: Controller) -> np.ndarray:
        """The plan's step with every car below the laxity floor raised to its full power."""
        s = snap.sessions
        full_kw = np.minimum(ctl.piles.max_kw, s.car_max_kw)
        critical = s.active & snap.controllable & (s.remaining_kwh > 1e-6) & (slack_s < self.cfg.laxity_floor_s)
        if not critical.any():
            return plan_kw
        return np.where(critical, np.maximum(plan_kw, full_kw), plan_kw)

    @staticmethod
    def _tick_fallback(snap: Snapshot, limits: HardLimits, ctl: Controller) -> Plan:
        t0 = time.perf_counter()
        plan = heuristics.llf(ctl.single_step_input(snap, limits))
        return Plan(power_kw=plan.power_kw, status="fallback:planning", fallback=True,
                    solve_ms=(time.perf_counter() - t0) * 1e3)

    def invalidate(self) -> None:
        self.plan = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
