"""The planner's entry points: the rolling-horizon plan (MPC) and the session-level solve.

`plan_mpc` turns a PlanInput (the sessions plugged in now) into power per pile per step;
`schedule_sessions` solves any set of sessions with windows on a grid (the offline
yardstick passes a whole scenario). Both use the LP of `youxu.scheduler.lp_build` and fall back
to the deterministic least-laxity-first allocator when the solver fails or runs out of time.
Pure: arrays in, arrays out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from youxu.scheduler import heuristics
from youxu.scheduler.lp_build import LpGrid, LpSessions, LpWeights, build_lp
from youxu.scheduler.lp_solve import LpResult, session_power_kw, solve_lp, unmet_kwh
from youxu.scheduler.lp_warm import WarmStart
from youxu.scheduler.model import Plan, PlanInput

DEFAULT_SOLVER = "GLOP"
# the rolling plan does not know the cars still to come: energy now is worth a little more than later
MPC_WEIGHTS = LpWeights(delay_per_kwh_h=0.1, delay_cap_h=1.0)
TAIL_S = 900.0  # the end of a car's stay the plan keeps free where it can (what a tick fell short is made up there)
MIN_SOLVE_MS = 2.0  # below this much time left after building, do not start the solver


@dataclass(frozen=True)
class MpcProblem:
    grid: LpGrid
    sessions: LpSessions
    pile_of_session: np.ndarray  # (K,) pile index of each session in the LP


def grid_from_input(inp: PlanInput) -> LpGrid:
    return LpGrid(
        step_h=np.asarray(inp.step_s, dtype=float) / 3600.0,
        base_kw=np.asarray(inp.base_kw, dtype=float),
        base_phase_kw=np.asarray(inp.base_phase_kw, dtype=float),
        import_limit_kw=np.asarray(inp.import_limit_kw, dtype=float),
        export_limit_kw=np.maximum(np.asarray(inp.export_limit_kw, dtype=float), 0.0),
        phase_limit_kw=None if inp.phase_limit_kw is None else np.asarray(inp.phase_limit_kw, dtype=float),
        ev_import_limit_kw=np.asarray(inp.ev_import_limit_kw, dtype=float),
        ev_export_limit_kw=np.maximum(np.asarray(inp.ev_export_limit_kw, dtype=float), 0.0),
        setpoint_kw=np.asarray(inp.setpoint_kw, dtype=float),
        setpoint_scope=inp.setpoint_scope,
        import_price=np.asarray(inp.import_price, dtype=float),
        export_price=np.asarray(inp.export_price, dtype=float),
        phase_share=inp.piles.phase_share,
        wear_yuan_per_kwh=float(inp.wear_yuan_per_kwh),
        step_key=np.round(inp.step_end_s).astype(np.int64) % (1 << 32),
        peak_floor_kw=float(inp.peak_floor_kw),
        import_band_kw=None if inp.base_spread_kw is None else np.asarray(inp.base_spread_kw, dtype=float),
        phase_band_kw=None if inp.base_phase_spread_kw is None else np.asarray(inp.base_phase_spread_kw, dtype=float),
    )


def sessions_from_input(inp: PlanInput, warm: WarmStart | None = None) -> tuple[LpSessions, np.ndarray]:
    """The LP sessions for the cars plugged in now: windows from now to departure."""
    s, p = inp.sessions, inp.piles
    step_s = np.asarray(inp.step_s, dtype=float)
    starts = inp.t0_s + np.concatenate([[0.0], np.cumsum(step_s)[:-1]])
    horizon_end = inp.t0_s + float(step_s.sum())
    soc = s.soc
    can_discharge = p.v2g & s.v2g & (p.max_discharge_kw > 0) & (soc > s.min_soc)
    rem = s.remaining_kwh
    keep = np.flatnonzero(s.active & inp.pile_online & ((rem > 1e-6) | can_discharge))
    dep = s.departure_s[keep].astype(float)
    overdue = dep <= inp.t0_s + 1e-9
    end = np.searchsorted(starts, dep, side="left")  # steps that start before departure
    end = np.where(overdue, 1, np.clip(end, 1, step_s.size))
    last_start = starts[end - 1]
    last_frac = np.clip((dep - last_start) / step_s[end - 1], 0.0, 1.0)
    last_frac = np.where(overdue | (dep >= horizon_end), 1.0, last_frac)
    max_kw = np.minimum(p.max_kw[keep], s.car_max_kw[keep])
    need = rem[keep]
    # a car staying beyond the horizon: what it must get inside the horizon, and its fair share of the rest
    beyond_h = np.maximum(dep - horizon_end, 0.0) / 3600.0
    must = np.maximum(need - max_kw * beyond_h, 0.0)
    share = np.where(dep > horizon_end, (horizon_end - inp.t0_s) / np.maximum(dep - inp.t0_s, 1.0), 1.0)
    target = np.maximum(must, need * share)
    batt = s.battery_kwh[keep]
    now_kwh = soc[keep] * batt
    ids = [s.ids[i] or f"#pile{i}" for i in keep]
    r = _reserve_windows(inp, starts, step_s)
    ids += list(r.key)
    z = np.zeros(r.n)
    sess = LpSessions(
        pile=np.concatenate([keep, r.pile]).astype(np.int64),
        start_step=np.concatenate([np.zeros(keep.size, dtype=np.int64), r.start_step]),
        end_step=np.concatenate([end, r.end_step]).astype(np.int64),
        first_frac=np.concatenate([np.ones(keep.size), r.first_frac]),
        last_frac=np.concatenate([last_frac, r.last_frac]),
        max_kw=np.concatenate([max_kw, r.max_kw]),
        discharge_kw=np.concatenate([np.where(can_discharge[keep], p.max_discharge_kw[keep], 0.0), z]),
        target_kwh=np.concatenate([target, r.energy_kwh]),
        cap_kwh=np.concatenate([need, r.energy_kwh]),
        urgent=np.concatenate([s.urgent[keep].astype(bool), np.zeros(r.n, dtype=bool)]),
        battery_now_kwh=np.concatenate([now_kwh, z]),
        battery_min_kwh=np.concatenate([np.minimum(s.min_soc[keep] * batt, now_kwh), z]),
        # full, or the request met: the car takes no more
        battery_max_kwh=np.concatenate([np.minimum(batt, now_kwh + need), r.energy_kwh]),
        uid=None if warm is None else warm.uids(ids),
        departure_coupling=True,  # a car leaving inside a step: plan the power it draws, not the step's average
        reserve=np.concatenate([np.zeros(keep.size, dtype=bool), np.ones(r.n, dtype=bool)]),
        # a car leaving inside the horizon keeps its last minutes as a margin (not an urgent one: full power first)
        tail_s=np.concatenate([np.where((dep < horizon_end) & ~s.urgent[keep], TAIL_S, 0.0), z]),
    )
    return sess, keep


@dataclass(frozen=True)
class ReserveWindows:
    """The expected arrivals on the plan's steps."""

    key: tuple[str, ...]
    pile: np.ndarray
    start_step: np.ndarray
    end_step: np.ndarray
    first_frac: np.ndarray
    last_frac: np.ndarray
    max_kw: np.ndarray
    energy_kwh: np.ndarray

    @property
    def n(self) -> int:
        return int(self.pile.size)


def _reserve_windows(inp: PlanInput, starts: np.ndarray, step_s: np.ndarray) -> ReserveWindows:
    e = inp.expected_arrivals
    ends = starts + step_s
    if e is None or e.n == 0 or step_s.size == 0:
        z = np.zeros(0)
        zi = np.zeros(0, dtype=np.int64)
        return ReserveWindows((), zi, zi, zi, z, z, z, z)
    a = np.clip(e.start_s, starts[0], ends[-1])
    b = np.clip(e.end_s, a, ends[-1])
    first = np.clip(np.searchsorted(ends, a, side="right"), 0, step_s.size - 1)
    last = np.clip(np.searchsorted(ends, b, side="left"), first, step_s.size - 1)
    ok = (b > a) & (e.energy_kwh > 0)
    # whole steps: the expected cars are a forecast by the hour, and no departure burst is theirs to plan
    ones = np.ones(int(ok.sum()))
    return ReserveWindows(tuple(k for k, o in zip(e.key, ok, strict=True) if o), e.pile[ok].astype(np.int64),
                          first[ok].astype(np.int64), (last[ok] + 1).astype(np.int64), ones, ones,
                          e.max_kw[ok], e.energy_kwh[ok])


def mpc_problem(inp: PlanInput, warm: WarmStart | None = None) -> MpcProblem:
    sess, keep = sessions_from_input(inp, warm)
    return MpcProblem(grid_from_input(inp), sess, keep)


def fallback_plan(inp: PlanInput, reason: str, build_ms: float = 0.0, solve_ms: float = 0.0) -> Plan:
    """The deterministic least-laxity-first allocation for this tick."""
    plan = heuristics.llf(inp)
    return Plan(power_kw=plan.power_kw, status=f"fallback:{reason}", fallback=True,
                build_ms=build_ms, solve_ms=solve_ms + plan.solve_ms, info={"reason": reason})


def plan_mpc(inp: PlanInput, time_limit_ms: float = 250.0, warm: WarmStart | None = None,
             solver: str = DEFAULT_SOLVER, weights: LpWeights | None = None,
             cold_time_limit_ms: float | None = None) -> Plan:
    """Power per pile per step (n, H) for the sessions plugged in now (kW while each car is plugged in).

    With `warm` (one per site, kept by the caller between ticks) GLOP starts from the last basis
    and a plan takes tens of milliseconds; without it every solve starts cold. A cold start (the
    first plan, or the first after a failure) may take `cold_time_limit_ms` (default ten times
    `time_limit_ms`): from scratch a large site needs a second or more, and a cut-short cold solve
    on a site that moves on between plans is slow to catch up. Never raises on bad luck: a solver
    failure, timeout or a budget already spent gives the least-laxity-first plan with `fallback=True`.
    """
    t0 = time.perf_counter()
    n, h = inp.piles.n, inp.horizon
    if h == 0:
        return Plan(power_kw=np.zeros((n, 0)), status="ok", info={"sessions": 0})
    try:
        prob = mpc_problem(inp, warm)
        lp = build_lp(prob.grid, prob.sessions, weights or MPC_WEIGHTS)
    except (ValueError, FloatingPointError, IndexError) as exc:  # malformed input: never leave the tick empty
        return fallback_plan(inp, f"build:{type(exc).__name__}", (time.perf_counter() - t0) * 1e3)
    build_ms = (time.perf_counter() - t0) * 1e3
    if warm is not None and not warm.saved_optimal:
        time_limit_ms = max(time_limit_ms, 10.0 * time_limit_ms if cold_time_limit_ms is None else cold_time_limit_ms)
    if prob.pile_of_session.size == 0:  # no car plugged in: nothing to plan (the cars to come are not here)
        return Plan(power_kw=np.zeros((n, h)), status="ok", build_ms=build_ms, info={"sessions": 0})
    left_ms = time_limit_ms - build_ms
    if left_ms < MIN_SOLVE_MS:
        return fallback_plan(inp, "budget", build_ms)
    res = solve_lp(lp, solver, left_ms / 1e3, warm)
    if not res.ok:
        return fallback_plan(inp, res.status, build_ms + res.load_ms, res.solve_ms)
    power = np.zeros((n, h))
    real = prob.pile_of_session.size  # the reserve sessions (cars still to come) come after the real ones
    power[prob.pile_of_session] = session_power_kw(lp, res.values)[:real]
    return Plan(
        power_kw=power, status=res.status, build_ms=build_ms + res.load_ms, solve_ms=res.solve_ms,
        info=_info(lp.n_cols, lp.n_rows, res, real, unmet_kwh(lp, res.values)[:real],
                   reserve_kwh=float(prob.sessions.target_kwh[real:].sum())),
    )


def _info(cols: int, rows: int, res: LpResult, k: int, unmet: np.ndarray, reserve_kwh: float = 0.0) -> dict:
    return {"cols": cols, "rows": rows, "sessions": k, "objective": res.objective, "iterations": res.iterations,
            "unmet_kwh": float(unmet.sum()), "reserve_kwh": reserve_kwh}


@dataclass
class SessionSchedule:
    power_kw: np.ndarray  # (K, H) net power of each session in each step
    status: str
    fallback: bool
    unmet_kwh: np.ndarray  # (K,)
    build_ms: float
    solve_ms: float


def schedule_sessions(grid: LpGrid, sessions: LpSessions, time_limit_s: float = 60.0,
                      solver: str = DEFAULT_SOLVER, weights: LpWeights | None = None) -> SessionSchedule:
    """Solve every session with its own window at once (the offline, perfect-foresight optimum).

    Raises RuntimeError when the solver gives no solution: the offline yardstick has no fallback.
    """
    t0 = time.perf_counter()
    lp = build_lp(grid, sessions, weights)
    build_ms = (time.perf_counter() - t0) * 1e3
    res = solve_lp(lp, solver, time_limit_s)
    if not res.ok:
        raise RuntimeError(f"offline LP not solved: {res.status} ({lp.n_cols} columns, {lp.n_rows} rows)")
    return SessionSchedule(session_power_kw(lp, res.values), res.status, False, unmet_kwh(lp, res.values),
                           build_ms + res.load_ms, res.solve_ms)
