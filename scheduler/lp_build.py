"""The charging LP as sparse arrays: sessions with time windows under site limits.

Generic over *sessions*: session k sits on pile `pile[k]`, may draw power on steps
[start_step[k], end_step[k]) and wants `target_kwh[k]` by the end of its window. The same
core serves the rolling planner (the sessions plugged in now) and the offline yardstick
(every session of a scenario with perfect foresight).

Columns (all kW or kWh, >= 0 unless said):
  x[k,t]  charging power of session k in step t (only inside its window)
  y[k,t]  discharge power (V2G sessions only), e[k,t] energy in the battery at the end of t
  u[k]    unmet energy at the end of the window (soft, very expensive)
  F[f,t]  EV power on phase f up to its headroom less its band, bp[f,t] in the band (costly),
          o[f,t] beyond the headroom (overflow); the phase's EV power is F + bp + o
  E[t]    EV aggregate in [-ev_export, ev_import]
  z[t,j]  site import in segment j of a convex piecewise-linear cost (valley filling)
  oi[t]   site import beyond the import limit, s[t] site export
  b[t]    site import in the band below the limit a household-load forecast error may take (costly)
  P       peak of the total transformer load, phi[c] largest unmet fraction of class c
  dp, dm  deviation above / below a dispatch setpoint
Rows: energy per session, fairness per session, battery balance per V2G session-step,
phase definitions, the EV aggregate, the site balance, the peak and the setpoint tracking
(and the limits at the power a car draws while plugged in: every session's with `peak_coupling`,
the offline yardstick's coarse blocks; with `departure_coupling`, the rolling plan's, only where a car
leaves inside a step).
Built without Python loops over sessions or steps. The data types are in `youxu.scheduler.lp_model`,
the element keys a warm start follows in `youxu.scheduler.lp_keys`.
"""

from __future__ import annotations

import numpy as np

from youxu.scheduler.lp_keys import column_keys, key, session_numbers, step_keys
from youxu.scheduler.lp_model import LpGrid, LpProblem, LpSessions, LpWeights

INF = np.inf
MIN_PRESENCE = 0.02  # share of a step below which a car's presence in it is not used
__all__ = ["LpGrid", "LpProblem", "LpSessions", "LpWeights", "build_lp"]


def _window_columns(s: LpSessions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session, step, availability) of every session-step inside a window."""
    length = np.maximum(s.end_step - s.start_step, 0).astype(np.int64)
    sess = np.repeat(np.arange(s.k, dtype=np.int64), length)
    offs = np.cumsum(length) - length
    pos = np.arange(sess.size, dtype=np.int64) - offs[sess]
    step = s.start_step.astype(np.int64)[sess] + pos
    frac = np.ones(sess.size)
    first = pos == 0
    last = pos == length[sess] - 1
    frac[first] = s.first_frac[sess[first]]
    frac[last] += s.last_frac[sess[last]] - 1.0
    frac = np.clip(frac, 0.0, 1.0)
    # a car there for a sliver of a step gets nothing in it: its power while plugged in (x / frac) would
    # put coefficients of thousands next to ones in the coupled rows, which the solver cannot hold precisely
    return sess, step, np.where(frac < MIN_PRESENCE, 0.0, frac)


def _valley_segments(g: LpGrid, w: LpWeights, headroom_kw: float,
                     limit_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper bounds (H, J) and marginal costs (J,) of the site import segments up to `limit_kw` (H,)."""
    h, j = g.horizon, max(int(w.valley_segments), 1)
    lo = float(np.min(g.base_kw)) if h else 0.0
    lo = max(lo, 0.0)
    reach = float(np.max(g.base_kw)) + headroom_kw if h else 1.0  # the most the EVs could lift the load to
    top = np.where(np.isfinite(limit_kw), np.minimum(limit_kw, reach), reach)
    hi = max(float(np.max(top)), lo + 1.0)
    width = (hi - lo) / j
    ub = np.empty((h, j + 1))
    ub[:, 0] = lo
    ub[:, 1:] = width
    # the segments end at the limit of each step (the last one reaches it; beyond it is band or overflow)
    cap = np.maximum(np.where(np.isfinite(limit_kw), limit_kw, INF), 0.0)
    edges = np.concatenate([[0.0], np.cumsum(ub[0])])  # lower edge of each segment
    ub = np.clip(cap[:, None] - edges[None, :-1], 0.0, ub)
    ub[~np.isfinite(limit_kw), -1] = INF
    slope = np.concatenate([[0.0], w.valley_per_kwh * np.arange(1, j + 1) / j])
    return ub, slope, edges


def build_lp(g: LpGrid, s: LpSessions, w: LpWeights | None = None) -> LpProblem:
    """The LP for these sessions on this grid (see the module docstring)."""
    w = w or LpWeights()
    h, k = g.horizon, s.k
    sess, step, frac = _window_columns(s)
    nx = sess.size
    v2g_x = s.discharge_kw[sess] > 0
    y_pos = np.flatnonzero(v2g_x)
    ny = y_pos.size
    typical_h = float(np.median(g.step_h)) if h else 1.0
    headroom = min(float(np.sum(s.max_kw)), float(np.sum(s.cap_kwh)) / max(typical_h, 1e-6))
    band = np.zeros(h) if g.import_band_kw is None else np.maximum(np.asarray(g.import_band_kw, dtype=float), 0.0)
    band = np.where(np.isfinite(g.import_limit_kw), np.minimum(band, np.maximum(g.import_limit_kw, 0.0)), 0.0)
    seg_ub, seg_slope, _ = _valley_segments(g, w, headroom, g.import_limit_kw - band)
    nseg = seg_ub.shape[1]

    # ---- columns -----------------------------------------------------------------------------
    sizes = {"x": nx, "y": ny, "e": ny, "u": k, "F": 3 * h, "o": 3 * h, "E": h, "z": h * nseg,
             "oi": h, "s": h, "P": 1, "phi": 2, "dp": h, "dm": h, "b": h, "bp": 3 * h}
    col: dict[str, slice] = {}
    at = 0
    for name, size in sizes.items():
        col[name] = slice(at, at + size)
        at += size
    n = at
    lb = np.zeros(n)
    ub = np.full(n, INF)
    c = np.zeros(n)
    dt = g.step_h

    ub[col["x"]] = s.max_kw[sess] * frac
    ub[col["y"]] = s.discharge_kw[sess[y_pos]] * frac[y_pos]
    lb[col["e"]] = s.battery_min_kwh[sess[y_pos]]
    ub[col["e"]] = s.battery_max_kwh[sess[y_pos]]
    # phase headroom: the EV power on a phase may reach the limit minus the household load on it
    if g.phase_limit_kw is None:
        hr = np.full((h, 3), INF)
    else:
        hr = np.broadcast_to(g.phase_limit_kw, (h, 3)) - g.base_phase_kw
    # the top of each phase's headroom a household-load forecast error may take (phase-major like F)
    pband = np.zeros(3 * h) if g.phase_band_kw is None or s.peak_coupling else \
        np.clip(np.broadcast_to(g.phase_band_kw, (h, 3)).T.reshape(-1), 0.0, None)
    pband = np.where(np.isfinite(hr.T.reshape(-1)), np.minimum(pband, np.maximum(hr.T.reshape(-1), 0.0)), 0.0)
    lb[col["F"]] = -INF
    ub[col["F"]] = INF if s.peak_coupling else hr.T.reshape(-1) - pband  # F ordered phase-major: f * H + t
    ub[col["bp"]] = pband
    ub[col["o"]] = np.where(np.isfinite(hr.T.reshape(-1)), INF, 0.0)
    lb[col["E"]] = -np.asarray(g.ev_export_limit_kw, dtype=float)
    ub[col["E"]] = g.ev_import_limit_kw
    ub[col["z"]] = seg_ub.reshape(-1)  # z ordered step-major: t * J + j
    ub[col["s"]] = g.export_limit_kw
    has_sp = np.isfinite(g.setpoint_kw)
    ub[col["dp"]] = np.where(has_sp, INF, 0.0)
    ub[col["dm"]] = np.where(has_sp, INF, 0.0)
    lb[col["P"]] = max(float(g.peak_floor_kw), 0.0)
    ub[col["b"]] = band

    # ---- objective ----------------------------------------------------------------------------
    early = _urgent_prefix(s, sess, step, dt, frac)
    mid_h = np.minimum(np.cumsum(dt) - 0.5 * dt, w.delay_cap_h)  # hours from the start to the middle of each step
    c[col["x"]] = (w.delay_per_kwh_h * mid_h[step] - w.urgent_early_per_kwh * early
                   + w.tail_per_kwh * _in_tail(s, sess, step, dt, frac)) * dt[step]
    c[col["y"]] = g.wear_yuan_per_kwh * dt[step[y_pos]]  # (no delay credit: it would pay for cycling the battery)
    c[col["u"]] = np.where(s.urgent, w.unmet_urgent_per_kwh,
                           np.where(s.is_reserve, w.reserve_unmet_per_kwh, w.unmet_per_kwh))
    c[col["o"]] = w.overflow_per_kwh * np.tile(dt, 3)
    c[col["z"]] = ((g.import_price[:, None] + seg_slope[None, :]) * dt[:, None]).reshape(-1)
    c[col["oi"]] = (w.overflow_per_kwh + g.import_price) * dt
    c[col["s"]] = -np.minimum(g.export_price, g.import_price) * dt
    c[col["P"]] = w.peak_per_kw
    c[col["phi"]] = w.fairness
    c[col["dp"]] = w.setpoint_per_kwh * dt
    c[col["dm"]] = w.setpoint_per_kwh * dt
    c[col["b"]] = (w.band_per_kwh + g.import_price) * dt
    c[col["bp"]] = w.band_per_kwh * np.tile(dt, 3)

    # ---- rows -------------------------------------------------------------------------------
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    rlb: list[np.ndarray] = []
    rub: list[np.ndarray] = []
    rkey: list[np.ndarray] = []
    r0 = 0
    uid, sk = session_numbers(s), step_keys(g)

    def add(r: np.ndarray, cc: np.ndarray, v: np.ndarray) -> None:
        rows.append(r)
        cols.append(cc)
        vals.append(v)

    xcol = col["x"].start + np.arange(nx)
    ycol = col["y"].start + np.arange(ny)
    ecol = col["e"].start + np.arange(ny)
    ucol = col["u"].start + np.arange(k)

    # energy, one row per session: target <= sum dt (x - y) + u <= cap (u > 0 only when target is missed)
    add(r0 + sess, xcol, dt[step])
    add(r0 + sess[y_pos], ycol, -dt[step[y_pos]])
    add(r0 + np.arange(k), ucol, np.ones(k))
    target = np.minimum(s.target_kwh, s.cap_kwh)
    rlb.append(target)
    rub.append(s.cap_kwh)
    rkey.append(key(1, uid, 0))
    r0 += k

    # fairness: u_k - target_k * phi_class <= 0
    cls = s.urgent.astype(np.int64)
    add(r0 + np.arange(k), ucol, np.ones(k))
    # rounding dust (1e-15 kWh) is no coefficient for a solver; the cars still to come are nobody's fairness
    owed = np.flatnonzero((target > 1e-6) & ~s.is_reserve)
    add(r0 + owed, col["phi"].start + cls[owed], -target[owed])
    rlb.append(np.full(k, -INF))
    rub.append(np.zeros(k))
    rkey.append(key(2, uid, 0))
    r0 += k

    # battery balance of V2G sessions: e_t - e_{t-1} - dt x + dt y = 0 (e_{start-1} = battery now)
    if ny:
        ys, yt = sess[y_pos], step[y_pos]
        rr = r0 + np.arange(ny)
        add(rr, ecol, np.ones(ny))
        add(rr, xcol[y_pos], -dt[yt])
        add(rr, ycol, dt[yt])
        prev = np.arange(ny) - 1
        has_prev = np.zeros(ny, dtype=bool)
        has_prev[1:] = ys[1:] == ys[:-1]
        add(rr[has_prev], ecol[prev[has_prev]], -np.ones(int(has_prev.sum())))
        rhs = np.where(has_prev, 0.0, s.battery_now_kwh[ys])
        rlb.append(rhs)
        rub.append(rhs)
        rkey.append(key(3, uid[ys], sk[yt]))
        r0 += ny

    # phase definitions: sum_k share (x - y) - F [- bp - o] = 0, one row per (phase, step)
    share = g.phase_share[s.pile[sess]]  # (nx, 3)
    for f in range(3):
        on = share[:, f] > 0
        add(r0 + f * h + step[on], xcol[on], share[on, f])
        on_y = share[y_pos, f] > 0
        add(r0 + f * h + step[y_pos][on_y], ycol[on_y], -share[y_pos][on_y, f])
    fcol = col["F"].start + np.arange(3 * h)
    add(r0 + np.arange(3 * h), fcol, -np.ones(3 * h))
    if not s.peak_coupling:  # the phase's power beyond F: in the band, or overflow when nothing else is left
        add(r0 + np.arange(3 * h), col["bp"].start + np.arange(3 * h), -np.ones(3 * h))
        add(r0 + np.arange(3 * h), col["o"].start + np.arange(3 * h), -np.ones(3 * h))
    rlb.append(np.zeros(3 * h))
    rub.append(np.zeros(3 * h))
    rkey.append(key(4, np.repeat(np.arange(3), h), np.tile(sk, 3)))
    r0 += 3 * h

    # EV aggregate: E_t - sum_f (F [+ bp + o]) = 0
    tt = np.arange(h)
    ecols = col["E"].start + tt
    add(r0 + tt, ecols, np.ones(h))
    add(r0 + np.tile(tt, 3), fcol, -np.ones(3 * h))
    if not s.peak_coupling:
        add(r0 + np.tile(tt, 3), col["bp"].start + np.arange(3 * h), -np.ones(3 * h))
        add(r0 + np.tile(tt, 3), col["o"].start + np.arange(3 * h), -np.ones(3 * h))
    rlb.append(np.zeros(h))
    rub.append(np.zeros(h))
    rkey.append(key(5, 0, sk))
    r0 += h

    if s.peak_coupling:
        r0 = _peak_rows(g, s, sess, step, frac, y_pos, col, hr, band, r0, add, rlb, rub, rkey)

    # site balance: E_t - sum_j z - b - oi + s = -base_t
    add(r0 + tt, ecols, np.ones(h))
    add(r0 + np.repeat(tt, nseg), col["z"].start + np.arange(h * nseg), -np.ones(h * nseg))
    add(r0 + tt, col["b"].start + tt, -np.ones(h))
    add(r0 + tt, col["oi"].start + tt, -np.ones(h))
    add(r0 + tt, col["s"].start + tt, np.ones(h))
    rlb.append(-g.base_kw)
    rub.append(-g.base_kw)
    rkey.append(key(6, 0, sk))
    r0 += h

    # peak of the total (household + EV net) load: E_t [+ departure bursts] - P <= -base_t
    add(r0 + tt, ecols, np.ones(h))
    add(r0 + tt, np.full(h, col["P"].start), -np.ones(h))
    if s.departure_coupling:
        burst = _departure_bursts(s, sess, step, frac, y_pos, col)
        add(r0 + burst[0], burst[1], burst[2])
    rlb.append(np.full(h, -INF))
    rub.append(-g.base_kw)
    rkey.append(key(7, 0, sk))
    r0 += h
    if s.departure_coupling:
        r0 = _departure_rows(g, burst, share, col, hr, band, r0, add, rlb, rub, rkey)

    # setpoint tracking: (E_t [+ base_t]) - dp + dm = setpoint, only where one applies
    sp_t = np.flatnonzero(has_sp)
    if sp_t.size:
        m = sp_t.size
        rr = r0 + np.arange(m)
        add(rr, ecols[sp_t], np.ones(m))
        add(rr, col["dp"].start + sp_t, -np.ones(m))
        add(rr, col["dm"].start + sp_t, np.ones(m))
        rhs = g.setpoint_kw[sp_t] - (g.base_kw[sp_t] if g.setpoint_scope == "site" else 0.0)
        rlb.append(rhs)
        rub.append(rhs)
        rkey.append(key(8, 0, sk[sp_t]))
        r0 += m

    data, indices, indptr = _to_csr(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), r0)
    return LpProblem(
        c=c, lb=lb, ub=ub, row_lb=np.concatenate(rlb), row_ub=np.concatenate(rub),
        a_data=data, a_indices=indices, a_indptr=indptr,
        col_key=column_keys(g, s, sess, step, y_pos, nseg), row_key=np.concatenate(rkey), step_key=sk,
        x_session=sess, x_step=step, x_frac=frac, y_pos=y_pos, target_kwh=target, col=col, n_sessions=k, horizon=h,
    )


def _peak_rows(g: LpGrid, s: LpSessions, sess: np.ndarray, step: np.ndarray, frac: np.ndarray, y_pos: np.ndarray,
               col: dict[str, slice], hr: np.ndarray, band: np.ndarray, r0: int, add, rlb: list, rub: list,
               rkey: list) -> int:
    """The site's limits with every session at the power it draws while plugged in (x / availability).

    Charging and discharging are bounded apart (a car that charges in part of a step does not offset
    one that discharges in another part), so every real step inside a coarse one keeps the limits.
    """
    h = g.horizon
    tt = np.arange(h)
    sk = step_keys(g)
    inv = 1.0 / np.where(frac > 1e-9, frac, 1.0)
    xcol = col["x"].start + np.arange(sess.size)
    ycol = col["y"].start + np.arange(y_pos.size)
    share = g.phase_share[s.pile[sess]] * inv[:, None]
    for f in range(3):  # phases: sum share x / a - o <= headroom
        on = share[:, f] > 0
        add(r0 + f * h + step[on], xcol[on], share[on, f])
    add(r0 + np.arange(3 * h), col["o"].start + np.arange(3 * h), -np.ones(3 * h))
    rlb.append(np.full(3 * h, -INF))
    rub.append(hr.T.reshape(-1))
    rkey.append(key(9, np.repeat(np.arange(3), h), np.tile(sk, 3)))
    r0 += 3 * h
    r0 = _import_rows(g, band, col, (step, xcol, inv), r0, add, rlb, rub, rkey)  # sum x / a
    # the peak of the real steps: the highest household load plus the EVs at their plugged-in power
    pk = g.base_kw if g.peak_base_kw is None else np.asarray(g.peak_base_kw, dtype=float)
    add(r0 + step, xcol, inv)
    add(r0 + tt, np.full(h, col["P"].start), -np.ones(h))
    rlb.append(np.full(h, -INF))
    rub.append(-pk)
    rkey.append(key(13, 0, sk))
    r0 += h
    if y_pos.size:  # discharge: sum y / a <= site export room and the EV export limit
        yinv = inv[y_pos]
        add(r0 + step[y_pos], ycol, yinv)
        rlb.append(np.full(h, -INF))
        rub.append(np.minimum(g.export_limit_kw + g.base_kw, g.ev_export_limit_kw))
        rkey.append(key(12, 0, sk))
        r0 += h
    return r0


def _departure_bursts(s: LpSessions, sess: np.ndarray, step: np.ndarray, frac: np.ndarray, y_pos: np.ndarray,
                      col: dict[str, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(step, column, coefficient, x index) of what a car leaving inside a step adds to the step average.

    While plugged in it draws x / a, so x (1/a - 1) on top of x; its discharge is not netted (after it
    has left, nothing offsets the others). Only the steps a car leaves inside (0 < a < 1) have entries.
    """
    part = np.flatnonzero((frac > 0.0) & (frac < 1.0 - 1e-9))
    coef = 1.0 / frac[part] - 1.0
    cols = col["x"].start + part
    yi = np.flatnonzero(np.isin(y_pos, part))
    return (np.concatenate([step[part], step[y_pos[yi]]]),
            np.concatenate([cols, col["y"].start + yi]),
            np.concatenate([coef, np.ones(yi.size)]),
            np.concatenate([part, y_pos[yi]]))


def _departure_rows(g: LpGrid, burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], share: np.ndarray,
                    col: dict[str, slice], hr: np.ndarray, band: np.ndarray, r0: int, add, rlb: list, rub: list,
                    rkey: list) -> int:
    """The site's limits with the departure bursts on top of the step averages (`_departure_bursts`).

    Site import: E_t + bursts - b - oi <= limit - band - base; EV import: E_t + bursts <= ev limit;
    phase f: F[f,t] + bp[f,t] + share x bursts <= headroom (what the bursts need beyond it lowers F, and
    the overflow o then carries it).
    """
    h = g.horizon
    tt = np.arange(h)
    sk = step_keys(g)
    st, bc, coef, xi = burst
    ev = (np.concatenate([tt, st]), np.concatenate([col["E"].start + tt, bc]), np.concatenate([np.ones(h), coef]))
    r0 = _import_rows(g, band, col, ev, r0, add, rlb, rub, rkey)  # E_t + bursts
    fcol = col["F"].start + np.arange(3 * h)
    add(r0 + np.arange(3 * h), fcol, np.ones(3 * h))
    add(r0 + np.arange(3 * h), col["bp"].start + np.arange(3 * h), np.ones(3 * h))
    for f in range(3):
        on = share[xi, f] > 0
        add(r0 + f * h + st[on], bc[on], coef[on] * share[xi[on], f])
    rlb.append(np.full(3 * h, -INF))
    rub.append(hr.T.reshape(-1))
    rkey.append(key(9, np.repeat(np.arange(3), h), np.tile(sk, 3)))
    return r0 + 3 * h


def _import_rows(g: LpGrid, band: np.ndarray, col: dict[str, slice],
                 ev: tuple[np.ndarray, np.ndarray, np.ndarray], r0: int, add, rlb: list, rub: list,
                 rkey: list) -> int:
    """Site import and EV import, with the EV power given as entries (step, column, coefficient):
    EV - b - oi <= import limit - band - household load, and EV <= the EV import limit."""
    h = g.horizon
    tt = np.arange(h)
    sk = step_keys(g)
    st, cc, vv = ev
    add(r0 + st, cc, vv)
    add(r0 + tt, col["b"].start + tt, -np.ones(h))
    add(r0 + tt, col["oi"].start + tt, -np.ones(h))
    rlb.append(np.full(h, -INF))
    rub.append(g.import_limit_kw - band - g.base_kw)
    rkey.append(key(10, 0, sk))
    r0 += h
    add(r0 + st, cc, vv)
    rlb.append(np.full(h, -INF))
    rub.append(np.asarray(g.ev_import_limit_kw, dtype=float))
    rkey.append(key(11, 0, sk))
    return r0 + h


def _in_tail(s: LpSessions, sess: np.ndarray, step: np.ndarray, dt: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """1 on the session-steps that start within `tail_s` of the car leaving (its window's end)."""
    if s.tail_s is None or not np.any(np.asarray(s.tail_s) > 0):
        return np.zeros(sess.size)
    ends_h = np.cumsum(dt)
    last = np.maximum(s.end_step - 1, 0)
    leave_h = ends_h[last] - (1.0 - s.last_frac) * dt[last]  # hours from the horizon's start to the departure
    start_h = ends_h[step] - dt[step]
    tail_h = np.asarray(s.tail_s, dtype=float)[sess] / 3600.0
    return ((leave_h[sess] - start_h < tail_h - 1e-9) & (frac > 0)).astype(float)


def _urgent_prefix(s: LpSessions, sess: np.ndarray, step: np.ndarray, dt: np.ndarray,
                   frac: np.ndarray) -> np.ndarray:
    """1 on the session-steps an urgent session would use at full power from the start of its window."""
    out = np.zeros(sess.size)
    if not s.urgent.any():
        return out
    e_step = s.max_kw[sess] * frac * dt[step]
    cum = np.cumsum(e_step)
    length = np.maximum(s.end_step - s.start_step, 0)
    offs = np.cumsum(length) - length
    before = (cum - e_step) - np.concatenate([[0.0], cum])[offs[sess]]  # energy before this step in its window
    need = s.target_kwh[sess]
    return np.where(s.urgent[sess] & (before < need - 1e-9), 1.0, 0.0)


def _to_csr(r: np.ndarray, cidx: np.ndarray, v: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays from coordinates (the builder produces no duplicates; column order within a row is free)."""
    order = np.argsort(r, kind="stable")
    counts = np.bincount(r, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return v[order].astype(np.float64), cidx[order].astype(np.int32), indptr
