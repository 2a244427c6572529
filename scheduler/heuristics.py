"""Single-step allocators: fair share, earliest-deadline-first, least-laxity-first.

Each takes a PlanInput and returns a one-step Plan that respects pile limits, the dead
band (0 or >= min_kw), the site import limit after the household load, the per-phase
limits and the ev-scope limits of step 0. They are the skeleton's controllers, the
yardsticks `edf`/`llf`, and the planner's deterministic fallback.
"""

from __future__ import annotations

import time

import numpy as np

from youxu.scheduler.model import Plan, PlanInput

EPS = 1e-9
BIND_TOL_KW = 1e-7  # a run within this of a limit is served pile by pile, exactly


def demand_kw(inp: PlanInput) -> np.ndarray:
    """Most each pile can usefully draw in step 0: pile, car and remaining energy allow."""
    s, p = inp.sessions, inp.piles
    dt_h = float(inp.step_s[0]) / 3600.0
    need = s.remaining_kwh / max(dt_h, 1e-9)
    cap = np.minimum(p.max_kw, s.car_max_kw)
    d = np.minimum(cap, need)
    # a session that needs less than the minimum still runs at the minimum (the car stops when full)
    d = np.where((d > EPS) & (d < p.min_kw), np.minimum(p.min_kw, cap), d)
    return np.where(s.active & inp.pile_online & (s.remaining_kwh > 1e-6), d, 0.0)


def headroom_kw(inp: PlanInput, fixed_kw: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Import headroom for the piles at step 0: total and per phase (inf where unlimited)."""
    total = min(float(inp.import_limit_kw[0]) - float(inp.base_kw[0]), float(inp.ev_import_limit_kw[0]))
    if inp.phase_limit_kw is None:
        phase = np.full(3, np.inf)
    else:
        phase = inp.phase_limit_kw - inp.base_phase_kw[0]
    if fixed_kw is not None:  # piles we cannot control (offline, ignoring setpoints)
        total -= float(fixed_kw.sum())
        phase = phase - fixed_kw @ inp.piles.phase_share
    return total, phase


def greedy_allocate(order: np.ndarray, demand: np.ndarray, min_kw: np.ndarray, share: np.ndarray,
                    total_kw: float, phase_kw: np.ndarray) -> np.ndarray:
    """Give each pile in `order` as much as it wants while the total and its phases have room.

    Pile by pile in `order`, computed a run at a time: every pile before the first one a limit
    binds on gets its whole demand at once (prefix sums), the binding pile is served on its own,
    and piles that can no longer reach their minimum are dropped (the room only ever shrinks,
    so a pile that cannot reach its minimum now never will).
    """
    alloc = np.zeros(demand.size)
    room_phase = phase_kw.astype(float).copy()
    room_total = float(total_kw)
    order = np.asarray(order, dtype=np.int64)
    # a pile that wants nothing, or less than its minimum, never gets anything
    order = order[(demand[order] > EPS) & (demand[order] + EPS >= min_kw[order])]
    wanted = demand[order]
    if wanted.sum() <= room_total - BIND_TOL_KW and (wanted @ share[order] <= room_phase - BIND_TOL_KW).all():
        alloc[order] = wanted  # room for everyone
        return alloc
    while order.size:
        sh = share[order]
        on = sh > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            phase_cap = np.where(on, room_phase / np.where(on, sh, 1.0), np.inf).min(axis=1)
        cap = np.minimum(np.minimum(demand[order], room_total), phase_cap)
        fits = (cap + EPS >= min_kw[order]) & (cap > EPS)
        if not fits.all():
            order, sh, on = order[fits], sh[fits], on[fits]
            if not order.size:
                break
        d = demand[order]
        run_total = np.cumsum(d)
        run_phase = np.cumsum(d[:, None] * sh, axis=0)
        binds = (run_total > room_total - BIND_TOL_KW) | (on & (run_phase > room_phase - BIND_TOL_KW)).any(axis=1)
        j = int(np.argmax(binds)) if binds.any() else order.size
        if j:
            alloc[order[:j]] = d[:j]
            room_total -= float(run_total[j - 1])
            room_phase -= run_phase[j - 1]
        if j == order.size:
            break
        i = int(order[j])
        on_i = share[i] > 0
        cap_i = min(float(demand[i]), room_total, float(np.min(room_phase[on_i] / share[i][on_i])))
        if cap_i + EPS >= min_kw[i] and cap_i > EPS:
            alloc[i] = cap_i
            room_total -= cap_i
            room_phase -= cap_i * share[i]
        order = order[j + 1:]
    return alloc


def waterfill(selected: np.ndarray, demand: np.ndarray, base: np.ndarray, share: np.ndarray,
              total_kw: float, phase_kw: np.ndarray) -> np.ndarray:
    """Raise the selected piles from `base` towards `demand` in equal increments under the limits."""
    alloc = base.copy()
    room_total = float(total_kw) - float(alloc.sum())
    room_phase = phase_kw - alloc @ share
    open_ = selected & (alloc < demand - EPS)
    for _ in range(demand.size + 3):
        if not open_.any() or room_total <= EPS:
            break
        n_open = int(open_.sum())
        step = room_total / n_open
        step = min(step, float(np.min(demand[open_] - alloc[open_])))
        load = share[open_].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_phase = np.where(load > EPS, room_phase / load, np.inf)
        step = min(step, float(np.min(per_phase)))
        if step <= EPS:
            # a phase is full: stop raising the piles on it
            full = (room_phase <= EPS) & (load > EPS)
            open_ &= ~((share[:, full] > 0).any(axis=1))
            continue
        alloc[open_] += step
        room_total -= step * n_open
        room_phase -= step * load
        open_ &= alloc < demand - EPS
    return alloc


def _order(key: np.ndarray, urgent: np.ndarray) -> np.ndarray:
    """Urgent sessions first, then ascending key (stable, so ties keep pile order)."""
    return np.lexsort((key, ~urgent))


def _one_step(inp: PlanInput, alloc: np.ndarray, t0: float, status: str) -> Plan:
    plan = np.zeros((inp.piles.n, max(inp.horizon, 1)))
    plan[:, 0] = alloc
    return Plan(power_kw=plan, status=status, solve_ms=(time.perf_counter() - t0) * 1e3)


def fairshare(inp: PlanInput) -> Plan:
    """Equal share of the headroom; when it cannot give everyone the minimum, earliest departure first."""
    t0 = time.perf_counter()
    p, s = inp.piles, inp.sessions
    d = demand_kw(inp)
    total, phase = headroom_kw(inp)
    order = _order(s.departure_s, s.urgent)
    # admit sessions at their minimum in order while it fits
    mins = np.where(d > EPS, np.minimum(p.min_kw, d), 0.0)
    admitted = greedy_allocate(order, mins, p.min_kw, p.phase_share, total, phase)
    alloc = waterfill(admitted > EPS, d, admitted, p.phase_share, total, phase)
    return _one_step(inp, alloc, t0, "fairshare")


def edf(inp: PlanInput) -> Plan:
    """Earliest departure first, each at the most it can take."""
    t0 = time.perf_counter()
    p, s = inp.piles, inp.sessions
    total, phase = headroom_kw(inp)
    alloc = greedy_allocate(_order(s.departure_s, s.urgent), demand_kw(inp), p.min_kw, p.phase_share, total, phase)
    return _one_step(inp, alloc, t0, "edf")


def laxity_s(inp: PlanInput) -> np.ndarray:
    """Time to spare: time to departure minus time needed at full power."""
    s, p = inp.sessions, inp.piles
    rate = np.maximum(np.minimum(p.max_kw, s.car_max_kw), 1e-6)
    return (s.departure_s - inp.t0_s) - s.remaining_kwh / rate * 3600.0


def llf(inp: PlanInput) -> Plan:
    """Least laxity first, each at the most it can take (the planner's fallback)."""
    t0 = time.perf_counter()
    p, s = inp.piles, inp.sessions
    total, phase = headroom_kw(inp)
    alloc = greedy_allocate(_order(laxity_s(inp), s.urgent), demand_kw(inp), p.min_kw, p.phase_share, total, phase)
    return _one_step(inp, alloc, t0, "llf")


def uncontrolled(inp: PlanInput) -> Plan:
    """Every car at full power on arrival, limits ignored (the baseline a study compares against)."""
    t0 = time.perf_counter()
    return _one_step(inp, demand_kw(inp), t0, "uncontrolled")


ALLOCATORS = {"fairshare": fairshare, "edf": edf, "llf": llf, "uncontrolled": uncontrolled}
