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
    sess = LpSessions(
        pile=keep.astype(np.int64),
        start_step=np.zeros(keep.size, dtype=np.int64),
        end_step=end.astype(np.int64),
        first_frac=np.ones(keep.size),
        last_frac=last_frac,
        max_kw=max_kw,
        discharge_kw=np.where(can_discharge[keep], p.max_discharge_kw[keep], 0.0),
        target_kwh=target,
        cap_kwh=need,
        urgent=s.urgent[keep].astype(bool),
        battery_now_kwh=now_kwh,
        battery_min_kwh=np.minimum(s.min_soc[keep] * batt, now_kwh),
        battery_max_kwh=np.minimum(batt, now_kwh + need),  # full, or the request met: the car takes no more
        uid=None if warm is None else warm.uids([s.ids[i] or f"#pile{i}" for i in keep]),
        departure_coupling=True,  # a car leaving inside a step: plan the power it draws, not the step's average
    )
    return sess, keep


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
    if prob.sessions.k == 0:
        return Plan(power_kw=np.zeros((n, h)), status="ok", build_ms=build_ms, info={"sessions": 0})
    left_ms = time_limit_ms - build_ms
    if left_ms < MIN_SOLVE_MS:
        return fallback_plan(inp, "budget", build_ms)
    res = solve_lp(lp, solver, left_ms / 1e3, warm)
    if not res.ok:
        return fallback_plan(inp, res.status, build_ms + res.load_ms, res.solve_ms)
    power = np.zeros((n, h))
    power[prob.pile_of_session] = session_power_kw(lp, res.values)
    return Plan(
        power_kw=power, status=res.status, build_ms=build_ms + res.load_ms, solve_ms=res.solve_ms,
        info=_info(lp.n_cols, lp.n_rows, res, prob.sessions.k, unmet_kwh(lp, res.values)),
    )


def _info(cols: int, rows: int, res: LpResult, k: int, unmet: np.ndarray) -> dict:
    return {"cols": cols, "rows": rows, "sessions": k, "objective": res.objective, "iterations": res.iterations,
            "unmet_kwh": float(unmet.sum())}


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
