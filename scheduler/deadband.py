"""From the plan's first step to pile setpoints that respect the dead band (0 or >= min_kw).

A pile cannot hold less than its minimum (6 A), so a plan that gives many piles a little
each is served by running some of them at their minimum and the others not at all, and
rotating. Each session's *debt* (energy the plan meant it to have minus what it was set to
draw) carries over between ticks in a `DeadbandState` the caller keeps, so over a few ticks
every session gets its planned energy. Rounding up only uses room that is left under the
total, phase and export headroom; it never pushes any of them over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from youxu.scheduler.model import Piles, PlanInput

EPS = 1e-9


@dataclass(frozen=True)
class Headroom:
    """Room for the piles this tick: import (total and per phase) and export."""

    import_kw: float  # the most the piles together may draw
    phase_kw: np.ndarray  # (3,) the most they may draw on each phase (inf where unlimited)
    export_kw: float = np.inf  # the most they may feed back together (>= 0)

    @staticmethod
    def of(inp: PlanInput, step: int = 0) -> Headroom:
        """The headroom at one step of a plan's input."""
        imp = min(float(inp.import_limit_kw[step] - inp.base_kw[step]), float(inp.ev_import_limit_kw[step]))
        exp = min(float(inp.export_limit_kw[step] + inp.base_kw[step]), float(inp.ev_export_limit_kw[step]))
        phase = np.full(3, np.inf) if inp.phase_limit_kw is None else inp.phase_limit_kw - inp.base_phase_kw[step]
        return Headroom(imp, np.asarray(phase, dtype=float), max(exp, 0.0))


class DeadbandState:
    """Energy owed to each pile's session (kWh, + = it got less than planned), kept between ticks."""

    def __init__(self, n: int, max_debt_s: float = 900.0) -> None:
        self.debt_kwh = np.zeros(n)
        self.session_ids: tuple[str | None, ...] = (None,) * n
        self.max_debt_s = max_debt_s  # debt is capped at this long at the pile's maximum power

    def follow(self, session_ids: Sequence[str | None]) -> None:
        """Forget the debt of piles whose session changed (a new car owes and is owed nothing)."""
        ids = tuple(session_ids)
        changed = np.array([a != b for a, b in zip(ids, self.session_ids, strict=True)], dtype=bool)
        self.debt_kwh[changed] = 0.0
        self.session_ids = ids


def _fits(add: np.ndarray, i: int, room: float, room_phase: np.ndarray, share: np.ndarray) -> float:
    """The most pile i may add (kW) without passing the total or its phases' room."""
    sh = share[i]
    on = sh > 0
    by_phase = float(np.min(room_phase[on] / sh[on])) if on.any() else np.inf
    return max(0.0, min(add[i], room, by_phase))


def to_setpoints(plan_kw: np.ndarray, piles: Piles, session_ids: Sequence[str | None], headroom: Headroom,
                 dt_s: float, state: DeadbandState, online: np.ndarray | None = None,
                 presence: np.ndarray | None = None, leave_s: np.ndarray | None = None,
                 car_max_kw: np.ndarray | None = None, slack_s: np.ndarray | None = None) -> np.ndarray:
    """Setpoints (kW) for this tick from the plan's first step; updates `state`'s debts.

    `presence` (0..1 per pile, default 1) is the share of the tick the car stays: a car leaving
    within the tick must be squared in the time it has left. With `leave_s` (time until each
    car leaves) the cars leaving soonest catch up first and are cut last when room is short;
    without it catching up goes by the debt and cuts are proportional. `car_max_kw` caps a pile
    at what its car accepts (a setpoint above it would be debt paid on paper only). With `slack_s`
    (each car's time left less the time it still needs at full power) the order is by slack instead,
    as least-laxity-first: a car that stays long but needs most of that time is not cut first.
    """
    n = piles.n
    state.follow(session_ids)
    plan = np.asarray(plan_kw, dtype=float).copy()
    on = np.ones(n, dtype=bool) if online is None else np.asarray(online, dtype=bool)
    has = np.array([s is not None for s in session_ids], dtype=bool) & on
    plan[~has] = 0.0
    state.debt_kwh[~has] = 0.0
    stay = np.ones(n) if presence is None else np.clip(np.asarray(presence, dtype=float), 0.0, 1.0)
    dt_h = dt_s / 3600.0 * stay  # per pile: the time its car is there in this tick
    mn = piles.min_kw
    mx = piles.max_kw if car_max_kw is None else np.minimum(piles.max_kw, np.asarray(car_max_kw, dtype=float))
    dis = np.where(piles.v2g, piles.max_discharge_kw, 0.0)
    share = piles.phase_share
    with np.errstate(divide="ignore", invalid="ignore"):
        owed = np.where(dt_h > 0, plan + state.debt_kwh / dt_h, 0.0)  # what each pile should draw to be square

    # 1. what the plan asks at or above the minimum, in the dead band's allowed set
    sp = np.where(plan >= mn - EPS, np.minimum(plan, mx), 0.0)
    sp = np.where(plan <= -mn + EPS, np.maximum(plan, -dis), sp)
    order_s = leave_s if slack_s is None else slack_s
    if order_s is None:
        sp = _cut_to_room(sp, share, headroom, mn)
    else:
        sp = _cut_latest_first(sp, share, headroom, mn, np.asarray(order_s, dtype=float))
    key = np.zeros(n) if order_s is None else np.asarray(order_s, dtype=float)

    # 2. catch up (or give back) within the dead band, most owed first, only where room is left
    extra = owed - sp
    # running piles move towards what they owe, staying at or above their minimum
    running = sp >= mn - EPS
    down = running & (extra < 0)
    sp[down] = np.maximum(sp[down] + extra[down], mn[down])
    room = headroom.import_kw - float(sp.sum())
    room_phase = headroom.phase_kw - sp @ share
    up = np.flatnonzero(running & (extra > EPS))
    for i in up[np.lexsort((-extra[up], key[up]))]:
        add = _fits(np.minimum(extra, mx - sp), i, room, room_phase, share)
        sp[i] += add
        room -= add
        room_phase -= add * share[i]
    # idle piles that are owed: start the most owed at their minimum while the owed total lasts
    idle = np.flatnonzero(has & (np.abs(sp) < EPS) & (owed > EPS) & (mx >= mn - EPS))
    budget = float(owed[idle].sum())
    for i in idle[np.lexsort((-owed[idle], key[idle]))]:
        if budget < mn[i] / 2.0:
            break
        if _fits(mx, i, room, room_phase, share) + EPS < mn[i]:
            continue
        start = min(max(owed[i], mn[i]), mx[i])
        start = _fits(np.full(n, start), i, room, room_phase, share)
        sp[i] = start
        room -= start
        room_phase -= start * share[i]
        budget -= start
    sp = _discharge_rounding(sp, owed, has, mn, dis, headroom)

    # 3. the debt carries what this tick did not square
    cap = mx * state.max_debt_s / 3600.0
    state.debt_kwh = np.clip(state.debt_kwh + (plan - sp) * dt_h, -cap, cap)
    state.debt_kwh[~has] = 0.0
    return sp


def _cut_latest_first(sp: np.ndarray, share: np.ndarray, headroom: Headroom, mn: np.ndarray,
                      leave_s: np.ndarray) -> np.ndarray:
    """Bring charging within the room, cutting the cars that stay longest first (dead band kept)."""
    out = sp.copy()
    for i in np.argsort(-leave_s, kind="stable"):
        over_total = float(out.sum()) - headroom.import_kw
        over_phase = out @ share - headroom.phase_kw
        if over_total <= EPS and np.all(over_phase <= EPS):
            break
        if out[i] <= 0:
            continue
        on = share[i] > 0
        need = max(over_total, float(np.max(np.where(on, over_phase / np.where(on, share[i], 1.0), 0.0))))
        if need <= EPS:
            continue
        new = out[i] - need
        out[i] = new if new >= mn[i] - EPS else 0.0
    return _cut_to_room(out, share, headroom, mn)  # exports, and anything a cut could not reach


def _cut_to_room(sp: np.ndarray, share: np.ndarray, headroom: Headroom, mn: np.ndarray) -> np.ndarray:
    """Scale charging down (keeping the dead band) when the plan's own step no longer fits the room."""
    out = sp.copy()
    for _ in range(4):
        pos = out > 0
        over = max(float(out.sum()) - headroom.import_kw, 0.0)
        load = out @ share
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(load > EPS, np.clip(headroom.phase_kw / load, 0.0, 1.0), 1.0)
        f_total = 1.0 - over / float(out[pos].sum()) if over > EPS and out[pos].sum() > EPS else 1.0
        f_pile = np.min(np.where(share > 0, ratio[None, :], 1.0), axis=1)
        f = np.minimum(f_total, f_pile)
        if np.all(f[pos] >= 1.0 - 1e-12):
            break
        out = np.where(pos, out * f, out)
        out = np.where(pos & (out < mn - EPS), 0.0, out)
    exported = -float(out[out < 0].sum())
    if exported > headroom.export_kw + EPS:
        neg = out < 0
        out[neg] *= headroom.export_kw / exported
        out[neg & (out > -mn + EPS)] = 0.0
    return out


def _discharge_rounding(sp: np.ndarray, owed: np.ndarray, has: np.ndarray, mn: np.ndarray, dis: np.ndarray,
                        headroom: Headroom) -> np.ndarray:
    """Idle V2G piles the plan wants to discharge a little: the most owed run at their minimum."""
    cand = np.flatnonzero(has & (np.abs(sp) < EPS) & (owed < -EPS) & (dis >= mn))
    if cand.size == 0:
        return sp
    budget = -float(owed[cand].sum())
    room = headroom.export_kw + float(sp.sum())  # the piles may go down to -export_kw in total
    for i in cand[np.argsort(owed[cand], kind="stable")]:
        if budget < mn[i] / 2.0 or room < mn[i] - EPS:
            break
        sp[i] = -mn[i]
        room -= mn[i]
        budget -= mn[i]
    return sp
