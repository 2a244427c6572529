"""Time the planner on a synthetic site (`youxu bench solve`).

The site: n piles (mostly 7 kW single-phase spread over the phases, some 11 kW three-phase,
about 10 % V2G), an evening from 18:00 with cars that arrived over the afternoon and leave
from an hour later to the next morning, new cars arriving, a household load with its evening
peak, a time-of-use tariff and an active dispatch limit for the first two hours. The
transformer is sized so that the limits bind.

The bench plans the way the daemon does: once per planning period (60 s) on a 15-minute
grid aligned to the clock (the first step runs to the next quarter hour), the site moving on
between plans as planned (cars charging, leaving, arriving; the horizon moving on a step
every 15 plans), with the warm start the daemon keeps. The first plan starts cold (HiGHS,
then GLOP from its basis) and is not counted; `bench_cold` times every plan from scratch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from youxu.scheduler.arrivals import ArrivalModel
from youxu.scheduler.lp_build import LpWeights
from youxu.scheduler.lp_warm import WarmStart
from youxu.scheduler.model import Piles, Plan, PlanInput, Sessions, phase_matrix
from youxu.scheduler.planner import DEFAULT_SOLVER, plan_mpc

T0_S = 1_782_900_000.0  # 2026-07-01 18:00 +08:00 (fixed: the bench is deterministic)
STEP_S = 900.0
PLAN_PERIOD_S = 60.0


def _household_kw(hour: np.ndarray, households: int) -> np.ndarray:
    """A residential day profile (kW) peaking around 20:00, lowest around 04:00."""
    evening = np.exp(-0.5 * ((hour - 20.0) / 2.0) ** 2)
    morning = 0.5 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
    return households * (0.35 + 0.9 * evening + morning)


def _local_hour(t_s: np.ndarray) -> np.ndarray:
    return ((np.asarray(t_s) / 3600.0) + 8.0) % 24.0  # UTC+8


@dataclass
class SyntheticSite:
    """A site that can be planned at any time and moved on by a plan."""

    piles: Piles
    sessions: Sessions
    transformer_kw: float
    households: int
    horizon: int
    rng: np.random.Generator

    @staticmethod
    def make(n: int, horizon: int, seed: int = 1) -> SyntheticSite:
        rng = np.random.default_rng(seed)
        three = rng.random(n) < 0.1
        phase = [None if t else ("L1", "L2", "L3")[i % 3] for i, t in enumerate(three)]
        max_kw = np.where(three, 11.0, 7.0)
        v2g_pile = rng.random(n) < 0.1
        piles = Piles(
            ids=tuple(f"P{i:04d}" for i in range(n)),
            max_kw=max_kw,
            min_kw=np.where(three, 4.1, 1.4),
            phase_share=phase_matrix(phase, [3 if t else 1 for t in three]),
            v2g=v2g_pile,
            max_discharge_kw=np.where(v2g_pile, max_kw, 0.0),
        )
        site = SyntheticSite(piles, Sessions.empty(n), 0.0, 4 * n, horizon, rng)
        base_peak = float(_household_kw(np.array([20.0]), site.households)[0])
        site.transformer_kw = 1.15 * base_peak
        active = rng.random(n) < 0.8
        site.sessions = site._new_sessions(active, T0_S - rng.uniform(0, 4 * 3600, n), T0_S, 0)
        return site

    def _new_sessions(self, mask: np.ndarray, arrival_s: np.ndarray, now_s: float, serial: int) -> Sessions:
        """Sessions for the piles in `mask` (the others keep theirs)."""
        rng, n, old = self.rng, self.piles.n, self.sessions
        short = rng.random(n) < 0.25
        dwell_h = np.where(short, rng.uniform(1, 5, n), rng.uniform(11, 16, n))
        departure = now_s + dwell_h * 3600.0
        battery = rng.choice([40.0, 60.0, 75.0], n)
        soc0 = rng.uniform(0.2, 0.6, n)
        cap = np.minimum(self.piles.max_kw, np.where(rng.random(n) < 0.2, 3.7, np.inf))
        # most drivers ask for what the pile can deliver before they leave
        requested = np.minimum.reduce([rng.uniform(8, 35, n), (0.95 - soc0) * battery, 0.9 * cap * dwell_h])
        fresh = Sessions(
            active=mask,
            ids=tuple(f"S{serial}-{i}" if m else None for i, m in enumerate(mask)),
            arrival_s=arrival_s,
            departure_s=departure,
            energy_requested_kwh=requested,
            energy_delivered_kwh=np.where(now_s > arrival_s, np.minimum(requested, rng.uniform(0, 4, n)), 0.0),
            battery_kwh=battery,
            soc_arrival=soc0,
            min_soc=np.full(n, 0.3),
            v2g=self.piles.v2g & (rng.random(n) < 0.9),
            urgent=rng.random(n) < 0.03,
            car_max_kw=np.where(cap < self.piles.max_kw, cap, np.inf),
        )
        if not old.active.any():
            return fresh
        keep = ~mask
        return Sessions(
            active=np.where(keep, old.active, fresh.active),
            ids=tuple(o if k else f for o, f, k in zip(old.ids, fresh.ids, keep, strict=True)),
            **{f: np.where(keep, getattr(old, f), getattr(fresh, f)) for f in (
                "arrival_s", "departure_s", "energy_requested_kwh", "energy_delivered_kwh", "battery_kwh",
                "soc_arrival", "min_soc", "v2g", "urgent", "car_max_kw")},
        )

    def input_at(self, t_s: float) -> PlanInput:
        """The planner's view at `t_s`: a 15-minute grid aligned to the clock, dispatch limit until 20:00."""
        first = STEP_S - (t_s % STEP_S) or STEP_S
        steps = np.concatenate([[first], np.full(self.horizon - 1, STEP_S)])
        ends = t_s + np.cumsum(steps)
        base = _household_kw(_local_hour(ends - steps / 2), self.households)
        import_limit = np.full(steps.size, self.transformer_kw)
        import_limit[ends - steps < T0_S + 2 * 3600] = 0.95 * self.transformer_kw  # the grid asks for 5 % less
        hour = _local_hour(ends - steps / 2)
        price = np.where((hour >= 8) & (hour < 22), 0.5583, 0.2983)
        # the forecast's uncertainty: 8 % of the load hours ahead, none for the next minutes
        spread = 0.08 * base * np.sqrt(1.0 - np.exp(-2.0 * (ends - steps / 2 - t_s) / 5400.0))
        return PlanInput(
            t0_s=t_s,
            step_s=steps,
            base_kw=base,
            base_phase_kw=np.stack([base * 0.34, base * 0.33, base * 0.33], axis=1),
            import_limit_kw=import_limit,
            export_limit_kw=np.full(steps.size, 0.05 * self.transformer_kw),
            phase_limit_kw=np.full(3, self.transformer_kw / 3.0 * 1.02),
            ev_import_limit_kw=np.full(steps.size, np.inf),
            ev_export_limit_kw=np.full(steps.size, np.inf),
            setpoint_kw=np.full(steps.size, np.nan),
            setpoint_scope="ev",
            import_price=price,
            export_price=price,
            piles=self.piles,
            sessions=self.sessions,
            pile_online=np.ones(self.piles.n, dtype=bool),
            base_spread_kw=spread,
            base_phase_spread_kw=np.stack([spread * 0.34, spread * 0.33, spread * 0.33], axis=1),
        )

    def advance(self, plan: Plan, t_s: float, dt_s: float, serial: int) -> None:
        """Run `dt_s` at the plan's first step; cars leave at departure and new ones arrive."""
        s = self.sessions
        delivered = s.energy_delivered_kwh + np.where(s.active, plan.first_kw, 0.0) * dt_s / 3600.0
        gone = s.active & (s.departure_s <= t_s + dt_s)
        self.sessions = replace(s, energy_delivered_kwh=delivered, active=s.active & ~gone)
        free = ~self.sessions.active
        arriving = free & (self.rng.random(self.piles.n) < 0.002 * dt_s / 60.0)
        if arriving.any():
            self.sessions = self._new_sessions(arriving, np.full(self.piles.n, t_s + dt_s), t_s + dt_s, serial)


def synthetic_input(piles: int, horizon: int, seed: int = 1) -> PlanInput:
    return SyntheticSite.make(int(piles), int(horizon), seed).input_at(T0_S)


def _pct(a: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(a), q)), 2) if a else 0.0


def _report(piles: int, horizon: int, build: list[float], solve: list[float], total: list[float],
            statuses: list[str]) -> dict:
    worst = next((s for s in statuses if s not in ("optimal", "feasible", "ok")), statuses[-1] if statuses else "")
    return {
        "piles": int(piles),
        "horizon": int(horizon),
        "build_ms_p50": _pct(build, 50),
        "build_ms_p99": _pct(build, 99),
        "solve_ms_p50": _pct(solve, 50),
        "solve_ms_p99": _pct(solve, 99),
        "total_ms_p50": _pct(total, 50),
        "total_ms_p99": _pct(total, 99),
        "status": worst,
    }


def bench_solve(piles: int, horizon: int, repeat: int = 20, solver: str = DEFAULT_SOLVER,
                time_limit_ms: float = 10_000.0, weights: LpWeights | None = None, warm_start: bool = True,
                period_s: float = PLAN_PERIOD_S) -> dict:
    """Plan the rolling synthetic site `repeat` times, one planning period apart (after one uncounted plan),
    with the reserve for the cars still to come as the daemon's rolling planner adds it."""
    site = SyntheticSite.make(int(piles), int(horizon))
    warm = WarmStart() if warm_start else None
    arrivals = ArrivalModel()
    t_s = T0_S
    build: list[float] = []
    solve: list[float] = []
    total: list[float] = []
    statuses: list[str] = []
    for i in range(max(int(repeat), 1) + 1):
        inp = site.input_at(t_s)
        t0 = time.perf_counter()
        arrivals.observe(t_s, inp.sessions, inp.pile_online)
        inp = replace(inp, expected_arrivals=arrivals.expected(t_s, float(inp.step_end_s[-1]), inp.piles,
                                                               inp.sessions, inp.pile_online))
        plan = plan_mpc(inp, time_limit_ms, warm, solver, weights)
        elapsed = (time.perf_counter() - t0) * 1e3
        if i > 0:
            total.append(elapsed)
            build.append(plan.build_ms)
            solve.append(plan.solve_ms)
            statuses.append(plan.status)
        site.advance(plan, t_s, period_s, i)
        t_s += period_s
    return _report(piles, horizon, build, solve, total, statuses)


def bench_cold(piles: int, horizon: int, repeat: int = 5, solver: str = DEFAULT_SOLVER,
               time_limit_ms: float = 10_000.0, weights: LpWeights | None = None) -> dict:
    """The same site planned from scratch every time (what the first plan after a start costs)."""
    inp = synthetic_input(piles, horizon)
    build: list[float] = []
    solve: list[float] = []
    total: list[float] = []
    statuses: list[str] = []
    for _ in range(max(int(repeat), 1)):
        t0 = time.perf_counter()
        plan = plan_mpc(inp, time_limit_ms, None, solver, weights)
        total.append((time.perf_counter() - t0) * 1e3)
        build.append(plan.build_ms)
        solve.append(plan.solve_ms)
        statuses.append(plan.status)
    return _report(piles, horizon, build, solve, total, statuses)
