"""The offline yardstick: every session of a scenario planned at once with perfect foresight.

The planner's LP (`youxu.scheduler.planner.schedule_sessions`) sees the scenario's actual household
load, tariff and dispatch commands for the whole run. A day of 60 s steps is too fine for
one LP, so the LP works on blocks of about 15 minutes, with limits taken at the tightest
minute of each block; the block plan is then played back minute by minute through the same
dead-band disaggregation the daemon uses (`youxu.scheduler.deadband`), which keeps every step at
0 or at least the pile's minimum and within the headroom of that very step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from youxu.scheduler.deadband import DeadbandState, Headroom, to_setpoints
from youxu.scheduler.lp_build import LpGrid, LpProblem, LpSessions, LpWeights, build_lp
from youxu.scheduler.lp_front import front_point
from youxu.scheduler.model import Piles
from youxu.scheduler.planner import schedule_sessions
from youxu.sim.dispatch_arrays import scenario_dispatch_fn
from youxu.sim.physics import scenario_piles
from youxu.sim.scenario import Scenario

BLOCK_S = 900.0
TIME_LIMIT_S = 300.0


@dataclass(frozen=True)
class FineSite:
    """The scenario at its own step: household load, prices and the limits the piles must keep."""

    step_s: float
    base_kw: np.ndarray  # (N,)
    base_phase_kw: np.ndarray  # (N, 3)
    import_kw: np.ndarray  # (N,) site import cap (transformer or dispatch, less the margin)
    export_kw: np.ndarray  # (N,) site export cap >= 0
    phase_kw: np.ndarray | None  # (3,)
    ev_import_kw: np.ndarray
    ev_export_kw: np.ndarray
    setpoint_ev_kw: np.ndarray  # (N,) EV-aggregate target (site setpoints less the household load), NaN: none
    import_price: np.ndarray
    export_price: np.ndarray


def fine_site(sc: Scenario) -> FineSite:
    t = sc.start.timestamp() + sc.step_times_s().astype(float)
    base_phase = sc.base_phase_kw()
    base = base_phase.sum(axis=1)
    fn = scenario_dispatch_fn(sc)
    d = fn(t)
    setpoint = np.asarray(d.setpoint_kw, dtype=float).copy()
    if np.isfinite(setpoint).any():  # the winning setpoint's scope may change over the run: take it step by step
        for k in np.flatnonzero(np.isfinite(setpoint)):
            dk = fn(t[k:k + 1])
            setpoint[k] = float(dk.setpoint_kw[0]) - (base[k] if dk.setpoint_scope == "site" else 0.0)
    return FineSite(
        step_s=float(sc.step_s),
        base_kw=base,
        base_phase_kw=base_phase,
        import_kw=np.minimum(sc.site.limit_kw, d.site_import_max_kw) - sc.site.margin_kw,
        export_kw=np.maximum(np.minimum(sc.site.export_limit_kw, d.site_export_max_kw), 0.0),
        phase_kw=sc.phase_limits_kw(),
        ev_import_kw=np.asarray(d.ev_import_max_kw, dtype=float),
        ev_export_kw=np.maximum(np.asarray(d.ev_export_max_kw, dtype=float), 0.0),
        setpoint_ev_kw=setpoint,
        import_price=sc.import_price(),
        export_price=sc.export_price(),
    )


def _blocks(n: int, per: int) -> np.ndarray:
    """Block index of each fine step."""
    return np.arange(n) // per


def _reduce(x: np.ndarray, blk: np.ndarray, nb: int, how: str) -> np.ndarray:
    out = np.full((nb, *x.shape[1:]), np.inf if how == "min" else (-np.inf if how == "max" else 0.0))
    if how == "min":
        np.minimum.at(out, blk, x)
    elif how == "max":
        np.maximum.at(out, blk, x)
    else:
        np.add.at(out, blk, x)
        out /= np.bincount(blk, minlength=nb).reshape((nb,) + (1,) * (x.ndim - 1))
    return out


def block_grid(f: FineSite, per: int, phase_share: np.ndarray) -> LpGrid:
    """The LP's grid: blocks of `per` steps whose limits hold at every step inside them."""
    n = f.base_kw.size
    blk = _blocks(n, per)
    nb = int(blk[-1]) + 1
    mean_base = _reduce(f.base_kw, blk, nb, "mean")
    mean_phase = _reduce(f.base_phase_kw, blk, nb, "mean")
    # room at the tightest step of each block, carried back onto the block's mean household load
    import_kw = _reduce(f.import_kw - f.base_kw, blk, nb, "min") + mean_base
    export_kw = np.maximum(_reduce(f.export_kw + f.base_kw, blk, nb, "min") - mean_base, 0.0)
    phase_kw = None
    if f.phase_kw is not None:
        phase_kw = _reduce(f.phase_kw[None, :] - f.base_phase_kw, blk, nb, "min") + mean_phase
    sp = f.setpoint_ev_kw
    has = np.isfinite(sp)
    sp_sum = np.zeros(nb)
    np.add.at(sp_sum, blk[has], sp[has])
    sp_n = np.bincount(blk[has], minlength=nb)
    setpoint = np.where(sp_n > 0, sp_sum / np.maximum(sp_n, 1), np.nan)
    return LpGrid(
        step_h=np.bincount(blk, minlength=nb) * f.step_s / 3600.0,
        base_kw=mean_base,
        base_phase_kw=mean_phase,
        import_limit_kw=import_kw,
        export_limit_kw=export_kw,
        phase_limit_kw=phase_kw,
        ev_import_limit_kw=_reduce(f.ev_import_kw, blk, nb, "min"),
        ev_export_limit_kw=_reduce(f.ev_export_kw, blk, nb, "min"),
        setpoint_kw=setpoint,
        setpoint_scope="ev",
        import_price=_reduce(f.import_price, blk, nb, "mean"),
        export_price=_reduce(f.export_price, blk, nb, "mean"),
        phase_share=phase_share,
        peak_base_kw=_reduce(f.base_kw, blk, nb, "max"),
    )


@dataclass(frozen=True)
class FineWindows:
    """Each session's steps at the scenario's resolution."""

    pile: np.ndarray  # (K,)
    first: np.ndarray  # first step it is plugged in at the step's start
    end: np.ndarray  # one past its last step
    last_frac: np.ndarray  # share of the last step before it leaves


def fine_windows(sc: Scenario, piles: Piles) -> FineWindows:
    step = float(sc.step_s)
    index = {pid: i for i, pid in enumerate(piles.ids)}
    arr = np.array([s.arrival_s for s in sc.sessions], dtype=float)
    dep = np.array([s.departure_s for s in sc.sessions], dtype=float)
    first = np.ceil(arr / step).astype(np.int64)  # the physics plugs a car in at the first step start after arrival
    end = np.ceil(dep / step).astype(np.int64)
    end = np.maximum(end, first)
    last_frac = np.where(end > first, (dep - (end - 1) * step) / step, 0.0)
    return FineWindows(np.array([index[s.pile] for s in sc.sessions], dtype=np.int64), first, end,
                       np.clip(last_frac, 0.0, 1.0))


def block_sessions(sc: Scenario, piles: Piles, w: FineWindows, per: int) -> LpSessions:
    """The sessions on the block grid: availability in partly covered blocks, energy, V2G consent."""
    ss = sc.sessions
    k = len(ss)
    start_b = w.first // per
    end_b = np.where(w.end > w.first, (w.end - 1) // per + 1, start_b)
    # availability (in steps) inside the first and the last block
    steps_in_first = np.minimum(w.end, (start_b + 1) * per) - w.first
    last_in_first = (w.end <= (start_b + 1) * per) & (w.end > w.first)
    avail_first = steps_in_first - np.where(last_in_first, 1.0 - w.last_frac, 0.0)
    steps_in_last = w.end - (end_b - 1) * per
    avail_last = steps_in_last - (1.0 - w.last_frac)
    single = end_b - start_b <= 1
    nb = -(-sc.n_steps // per)
    block_len = np.minimum((np.arange(nb) + 1) * per, sc.n_steps) - np.arange(nb) * per  # the last may be short
    first_frac = np.clip(avail_first / block_len[np.minimum(start_b, nb - 1)], 0.0, 1.0)
    last_len = block_len[np.clip(end_b - 1, 0, nb - 1)]
    last_frac = np.where(single, 1.0, np.clip(avail_last / last_len, 0.0, 1.0))
    car = np.array([s.max_kw if s.max_kw else np.inf for s in ss], dtype=float)
    max_kw = np.minimum(piles.max_kw[w.pile], car) if k else np.zeros(0)
    bat = np.array([s.battery_kwh for s in ss], dtype=float)
    soc0 = np.array([s.soc_arrival for s in ss], dtype=float)
    min_soc = np.array([s.min_soc for s in ss], dtype=float)
    v2g = np.array([s.v2g for s in ss], dtype=bool)
    want = np.array([s.energy_kwh for s in ss], dtype=float)
    room = np.maximum((1.0 - soc0) * bat, 0.0)
    target = np.minimum(want, room)
    may_discharge = piles.v2g[w.pile] & v2g & (soc0 > min_soc) if k else np.zeros(0, dtype=bool)
    return LpSessions(
        pile=w.pile,
        start_step=start_b,
        end_step=end_b,
        first_frac=first_frac,
        last_frac=last_frac,
        max_kw=max_kw,
        discharge_kw=np.where(may_discharge, piles.max_discharge_kw[w.pile], 0.0) if k else np.zeros(0),
        target_kwh=target,
        cap_kwh=target,
        urgent=np.array([s.priority == "urgent" for s in ss], dtype=bool),
        battery_now_kwh=soc0 * bat,
        battery_min_kwh=np.minimum(min_soc, soc0) * bat,
        battery_max_kwh=np.minimum(bat, soc0 * bat + target),  # a car takes nothing beyond its request
        peak_coupling=True,
    )


def play_back(sc: Scenario, f: FineSite, piles: Piles, w: FineWindows, block_kw: np.ndarray, per: int) -> np.ndarray:
    """(K, N) kW: the block plan (kW while plugged in) step by step through the dead band and each step's room."""
    n, k = sc.n_steps, len(sc.sessions)
    out = np.zeros((k, n))
    if k == 0:
        return out
    # each session's block power (while plugged in) at the steps it is plugged in
    avail = np.zeros((k, n))
    rows = np.repeat(np.arange(k), np.maximum(w.end - w.first, 0))
    cols = np.concatenate([np.arange(a, b) for a, b in zip(w.first, w.end, strict=True)]) if rows.size else rows
    avail[rows, cols] = 1.0
    has_last = w.end > w.first
    avail[np.flatnonzero(has_last), w.end[has_last] - 1] = w.last_frac[has_last]
    blk = _blocks(n, per)
    want = np.where(avail > 0, block_kw[:, blk], 0.0)
    # play back step by step: which session is on which pile, through the dead band
    state = DeadbandState(piles.n)
    car_kw = np.array([s.max_kw if s.max_kw else np.inf for s in sc.sessions], dtype=float)
    on_pile = np.full((n, piles.n), -1, dtype=np.int64)
    on_pile[cols, w.pile[rows]] = rows
    for t in range(n):
        sess = on_pile[t]
        has = sess >= 0
        plan = np.where(has, want[np.maximum(sess, 0), t], 0.0)
        ids = [sc.sessions[s].id if s >= 0 else None for s in sess]
        head = Headroom(
            import_kw=min(float(f.import_kw[t] - f.base_kw[t]), float(f.ev_import_kw[t])),
            phase_kw=np.full(3, np.inf) if f.phase_kw is None else f.phase_kw - f.base_phase_kw[t],
            export_kw=max(min(float(f.export_kw[t] + f.base_kw[t]), float(f.ev_export_kw[t])), 0.0),
        )
        stay = np.where(has, avail[np.maximum(sess, 0), t], 0.0)
        leave = np.where(has, (w.end[np.maximum(sess, 0)] - 1 - t + w.last_frac[np.maximum(sess, 0)]) * f.step_s,
                         np.inf)
        sp = to_setpoints(plan, piles, ids, head, f.step_s, state, presence=stay, leave_s=leave,
                          car_max_kw=np.where(has, car_kw[np.maximum(sess, 0)], np.inf))
        out[sess[has], t] = sp[has]
    return out


def offline_schedule(sc: Scenario, block_s: float = BLOCK_S, time_limit_s: float = TIME_LIMIT_S,
                     weights: LpWeights | None = None) -> np.ndarray:
    """(n_sessions, n_steps) kW each session draws at each scenario step (perfect foresight)."""
    piles = scenario_piles(sc)
    k, n = len(sc.sessions), sc.n_steps
    if k == 0 or n == 0:
        return np.zeros((k, n))
    per = max(1, math.floor(block_s / sc.step_s))
    f = fine_site(sc)
    w = fine_windows(sc, piles)
    grid = block_grid(f, per, piles.phase_share)
    sessions = block_sessions(sc, piles, w, per)
    res = schedule_sessions(grid, sessions, time_limit_s, weights=weights)
    return play_back(sc, f, piles, w, res.power_kw, per)


PARETO_KEYS = ("peak_at_same_cost_kw", "cost_at_same_peak_yuan", "peak_gap", "cost_gap")
FRONT_MAX_BLOCKS = 1440  # the front is solved at the scenario's own step up to this many steps (a day of minutes)


def front_block_s(sc: Scenario) -> float:
    """The front's block: the scenario's step (exact: no plan can do better), coarser only for long runs."""
    return float(sc.step_s * max(1, -(-sc.n_steps // FRONT_MAX_BLOCKS)))


def front_problem(sc: Scenario, block_s: float = BLOCK_S) -> tuple[LpGrid, LpProblem]:
    """The offline yardstick's LP (every session, perfect foresight, on blocks of about `block_s`)."""
    piles = scenario_piles(sc)
    per = max(1, math.floor(block_s / sc.step_s))
    f = fine_site(sc)
    grid = block_grid(f, per, piles.phase_share)
    return grid, build_lp(grid, block_sessions(sc, piles, fine_windows(sc, piles), per))


def _gap(value: float, best: float) -> float | None:
    return None if best <= 1e-9 or value < 0 else round(value / best, 4)


def pareto(sc: Scenario, kpis: dict, block_s: float | None = None,
           time_limit_s: float = TIME_LIMIT_S) -> dict | None:
    """Contract section 6: the perfect-foresight front at this run's own served energy.

    `peak_at_same_cost_kw`: the lowest peak any plan reaches delivering as much energy for no more EV cost;
    `cost_at_same_peak_yuan`: the lowest EV cost of a plan delivering as much with no higher peak; the gaps
    are the run's figures over those (1 is on the front). The LP knows no dead band between 0 and a pile's
    minimum, so on the scenario's own step it bounds every real plan from below. None without sessions."""
    if not sc.sessions or sc.n_steps == 0:
        return None
    grid, prob = front_problem(sc, front_block_s(sc) if block_s is None else block_s)
    energy = float(kpis["energy_delivered_kwh"])
    at_cost = front_point(grid, prob, energy, cost_cap_yuan=float(kpis["ev_cost_yuan"]), time_limit_s=time_limit_s)
    at_peak = front_point(grid, prob, energy, peak_cap_kw=float(kpis["peak_total_kw"]), time_limit_s=time_limit_s)
    return {
        "peak_at_same_cost_kw": round(at_cost.peak_kw, 3),
        "cost_at_same_peak_yuan": round(at_peak.ev_cost_yuan, 2),
        "peak_gap": _gap(float(kpis["peak_total_kw"]), at_cost.peak_kw),
        "cost_gap": _gap(float(kpis["ev_cost_yuan"]), at_peak.ev_cost_yuan),
    }
