"""The charging LP as sparse arrays: sessions with time windows under site limits.

Generic over *sessions*: session k sits on pile `pile[k]`, may draw power on steps
[start_step[k], end_step[k]) and wants `target_kwh[k]` by the end of its window. The same
core serves the rolling planner (the sessions plugged in now) and the offline yardstick
(every session of a scenario with perfect foresight).

Columns (all kW or kWh, >= 0 unless said):
  x[k,t]  charging power of session k in step t (only inside its window)
  y[k,t]  discharge power (V2G sessions only), e[k,t] energy in the battery at the end of t
  u[k]    unmet energy at the end of the window (soft, very expensive)
  F[f,t]  EV power on phase f (free), o[f,t] phase overflow beyond the headroom
  E[t]    EV aggregate in [-ev_export, ev_import]
  z[t,j]  site import in segment j of a convex piecewise-linear cost (valley filling)
  oi[t]   site import beyond the import limit, s[t] site export
  P       peak of the total transformer load, phi[c] largest unmet fraction of class c
  dp, dm  deviation above / below a dispatch setpoint
Rows: energy per session, fairness per session, battery balance per V2G session-step,
phase definitions, the EV aggregate, the site balance, the peak and the setpoint tracking.
Built without Python loops over sessions or steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INF = np.inf


@dataclass(frozen=True)
class LpWeights:
    """Objective weights, in yuan per unit; their order encodes the planner's priorities."""

    overflow_per_kwh: float = 1.0e5  # a hard limit the EVs cannot keep (household load alone is too high)
    unmet_urgent_per_kwh: float = 3.0e4
    unmet_per_kwh: float = 1.0e4
    urgent_early_per_kwh: float = 2.0e3  # reward for urgent energy delivered in its full-power prefix
    setpoint_per_kwh: float = 1.0e3  # deviation from a dispatch setpoint
    peak_per_kw: float = 20.0  # the horizon's peak of the total transformer load
    valley_per_kwh: float = 0.4  # spread of the convex cost on total load (flattens it)
    valley_segments: int = 12
    fairness: float = 50.0  # per unit of the largest unmet fraction (per urgency class)


@dataclass(frozen=True)
class LpGrid:
    """The site over the horizon: H steps of `step_h` hours."""

    step_h: np.ndarray  # (H,)
    base_kw: np.ndarray  # (H,) household load, total
    base_phase_kw: np.ndarray  # (H, 3)
    import_limit_kw: np.ndarray  # (H,) site import cap (inf where none)
    export_limit_kw: np.ndarray  # (H,) site export cap >= 0
    phase_limit_kw: np.ndarray | None  # (3,) or (H, 3), or None
    ev_import_limit_kw: np.ndarray  # (H,)
    ev_export_limit_kw: np.ndarray  # (H,) >= 0
    setpoint_kw: np.ndarray  # (H,) NaN where none
    setpoint_scope: str  # "ev" or "site"
    import_price: np.ndarray  # (H,) yuan/kWh
    export_price: np.ndarray  # (H,)
    phase_share: np.ndarray  # (n_piles, 3)
    wear_yuan_per_kwh: float = 0.05
    step_key: np.ndarray | None = None  # (H,) stable id of each step across solves (e.g. its end time, s)
    peak_base_kw: np.ndarray | None = None  # (H,) household load at its highest within each step (coarse steps)

    @property
    def horizon(self) -> int:
        return int(self.step_h.size)


@dataclass(frozen=True)
class LpSessions:
    """K sessions with their windows on the grid's steps."""

    pile: np.ndarray  # (K,) int, row of LpGrid.phase_share
    start_step: np.ndarray  # (K,) int, first step with power
    end_step: np.ndarray  # (K,) int, exclusive
    first_frac: np.ndarray  # (K,) share of the first step the car is there (arrival inside the step)
    last_frac: np.ndarray  # (K,) share of the last step the car is there (departure inside the step)
    max_kw: np.ndarray  # (K,) pile and car limit
    discharge_kw: np.ndarray  # (K,) > 0 only where pile and driver consent to V2G
    target_kwh: np.ndarray  # (K,) energy wanted by the end of the window (soft)
    cap_kwh: np.ndarray  # (K,) most net energy the window may take (>= target)
    urgent: np.ndarray  # (K,) bool
    battery_now_kwh: np.ndarray  # (K,) energy in the battery at the window start
    battery_min_kwh: np.ndarray  # (K,) floor for V2G (min_soc * capacity)
    battery_max_kwh: np.ndarray  # (K,) capacity
    uid: np.ndarray | None = None  # (K,) stable id of each session across solves (< 2**24)
    # count a session in the site's rows at the power it draws while plugged in (x / availability), not its
    # step average: steps coarser than the real ones (the offline yardstick's blocks) then never overfill
    # any real step inside them when a car arrives or leaves within a step
    peak_coupling: bool = False

    @property
    def k(self) -> int:
        return int(self.pile.size)


@dataclass
class LpProblem:
    """A built LP: bounds, costs and a CSR constraint matrix, plus where each block lives."""

    c: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    a_data: np.ndarray
    a_indices: np.ndarray
    a_indptr: np.ndarray
    x_session: np.ndarray  # session of each x column
    x_step: np.ndarray  # step of each x column
    x_frac: np.ndarray  # share of its step the car is plugged in (x is the step's average power)
    target_kwh: np.ndarray  # (K,) energy row lower bounds
    y_pos: np.ndarray  # index into x of each y column (the same session-step)
    col_key: np.ndarray  # (n_cols,) int64 stable identity of each column (warm starts map bases by it)
    row_key: np.ndarray  # (n_rows,) int64
    step_key: np.ndarray  # (H,) int64, the grid's step keys in order
    col: dict[str, slice]
    n_sessions: int
    horizon: int

    @property
    def n_cols(self) -> int:
        return int(self.c.size)

    @property
    def n_rows(self) -> int:
        return int(self.row_lb.size)


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
    return sess, step, np.clip(frac, 0.0, 1.0)


def _valley_segments(g: LpGrid, w: LpWeights, headroom_kw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper bounds (H, J) and marginal costs (J,) of the site import segments."""
    h, j = g.horizon, max(int(w.valley_segments), 1)
    lo = float(np.min(g.base_kw)) if h else 0.0
    lo = max(lo, 0.0)
    reach = float(np.max(g.base_kw)) + headroom_kw if h else 1.0  # the most the EVs could lift the load to
    top = np.where(np.isfinite(g.import_limit_kw), np.minimum(g.import_limit_kw, reach), reach)
    hi = max(float(np.max(top)), lo + 1.0)
    width = (hi - lo) / j
    ub = np.empty((h, j + 1))
    ub[:, 0] = lo
    ub[:, 1:] = width
    # the segments end at the import limit of each step (the last one reaches it; beyond it is overflow)
    cap = np.maximum(np.where(np.isfinite(g.import_limit_kw), g.import_limit_kw, INF), 0.0)
    edges = np.concatenate([[0.0], np.cumsum(ub[0])])  # lower edge of each segment
    ub = np.clip(cap[:, None] - edges[None, :-1], 0.0, ub)
    ub[~np.isfinite(g.import_limit_kw), -1] = INF
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
    seg_ub, seg_slope, _ = _valley_segments(g, w, headroom)
    nseg = seg_ub.shape[1]

    # ---- columns -----------------------------------------------------------------------------
    sizes = {"x": nx, "y": ny, "e": ny, "u": k, "F": 3 * h, "o": 3 * h, "E": h, "z": h * nseg,
             "oi": h, "s": h, "P": 1, "phi": 2, "dp": h, "dm": h}
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
    lb[col["F"]] = -INF
    ub[col["F"]] = INF if s.peak_coupling else hr.T.reshape(-1)  # F ordered phase-major: f * H + t
    ub[col["o"]] = np.where(np.isfinite(hr.T.reshape(-1)), INF, 0.0)
    lb[col["E"]] = -np.asarray(g.ev_export_limit_kw, dtype=float)
    ub[col["E"]] = g.ev_import_limit_kw
    ub[col["z"]] = seg_ub.reshape(-1)  # z ordered step-major: t * J + j
    ub[col["s"]] = g.export_limit_kw
    has_sp = np.isfinite(g.setpoint_kw)
    ub[col["dp"]] = np.where(has_sp, INF, 0.0)
    ub[col["dm"]] = np.where(has_sp, INF, 0.0)

    # ---- objective ----------------------------------------------------------------------------
    early = _urgent_prefix(s, sess, step, dt, frac)
    c[col["x"]] = -w.urgent_early_per_kwh * dt[step] * early
    c[col["y"]] = g.wear_yuan_per_kwh * dt[step[y_pos]]
    c[col["u"]] = np.where(s.urgent, w.unmet_urgent_per_kwh, w.unmet_per_kwh)
    c[col["o"]] = w.overflow_per_kwh * np.tile(dt, 3)
    c[col["z"]] = ((g.import_price[:, None] + seg_slope[None, :]) * dt[:, None]).reshape(-1)
    c[col["oi"]] = (w.overflow_per_kwh + g.import_price) * dt
    c[col["s"]] = -np.minimum(g.export_price, g.import_price) * dt
    c[col["P"]] = w.peak_per_kw
    c[col["phi"]] = w.fairness
    c[col["dp"]] = w.setpoint_per_kwh * dt
    c[col["dm"]] = w.setpoint_per_kwh * dt

    # ---- rows -------------------------------------------------------------------------------
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    rlb: list[np.ndarray] = []
    rub: list[np.ndarray] = []
    rkey: list[np.ndarray] = []
    r0 = 0
    uid, sk = _uid(s), _step_key(g)

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
    rkey.append(_key(1, uid, 0))
    r0 += k

    # fairness: u_k - target_k * phi_class <= 0
    cls = s.urgent.astype(np.int64)
    add(r0 + np.arange(k), ucol, np.ones(k))
    add(r0 + np.arange(k), col["phi"].start + cls, -target)
    rlb.append(np.full(k, -INF))
    rub.append(np.zeros(k))
    rkey.append(_key(2, uid, 0))
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
        rkey.append(_key(3, uid[ys], sk[yt]))
        r0 += ny

    # phase definitions: sum_k share (x - y) - F = 0, one row per (phase, step)
    share = g.phase_share[s.pile[sess]]  # (nx, 3)
    for f in range(3):
        on = share[:, f] > 0
        add(r0 + f * h + step[on], xcol[on], share[on, f])
        on_y = share[y_pos, f] > 0
        add(r0 + f * h + step[y_pos][on_y], ycol[on_y], -share[y_pos][on_y, f])
    fcol = col["F"].start + np.arange(3 * h)
    add(r0 + np.arange(3 * h), fcol, -np.ones(3 * h))
    rlb.append(np.zeros(3 * h))
    rub.append(np.zeros(3 * h))
    rkey.append(_key(4, np.repeat(np.arange(3), h), np.tile(sk, 3)))
    r0 += 3 * h

    # EV aggregate: E_t - sum_f (F + o) = 0
    tt = np.arange(h)
    ecols = col["E"].start + tt
    add(r0 + tt, ecols, np.ones(h))
    add(r0 + np.tile(tt, 3), fcol, -np.ones(3 * h))
    if not s.peak_coupling:
        add(r0 + np.tile(tt, 3), col["o"].start + np.arange(3 * h), -np.ones(3 * h))
    rlb.append(np.zeros(h))
    rub.append(np.zeros(h))
    rkey.append(_key(5, 0, sk))
    r0 += h

    if s.peak_coupling:
        r0 = _peak_rows(g, s, sess, step, frac, y_pos, col, hr, r0, add, rlb, rub, rkey)

    # site balance: E_t - sum_j z - oi + s = -base_t
    add(r0 + tt, ecols, np.ones(h))
    add(r0 + np.repeat(tt, nseg), col["z"].start + np.arange(h * nseg), -np.ones(h * nseg))
    add(r0 + tt, col["oi"].start + tt, -np.ones(h))
    add(r0 + tt, col["s"].start + tt, np.ones(h))
    rlb.append(-g.base_kw)
    rub.append(-g.base_kw)
    rkey.append(_key(6, 0, sk))
    r0 += h

    # peak: E_t - s_t - P <= -base_t
    add(r0 + tt, ecols, np.ones(h))
    add(r0 + tt, col["s"].start + tt, -np.ones(h))
    add(r0 + tt, np.full(h, col["P"].start), -np.ones(h))
    rlb.append(np.full(h, -INF))
    rub.append(-g.base_kw)
    rkey.append(_key(7, 0, sk))
    r0 += h

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
        rkey.append(_key(8, 0, sk[sp_t]))
        r0 += m

    data, indices, indptr = _to_csr(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), r0)
    return LpProblem(
        c=c, lb=lb, ub=ub, row_lb=np.concatenate(rlb), row_ub=np.concatenate(rub),
        a_data=data, a_indices=indices, a_indptr=indptr,
        col_key=_column_keys(g, s, sess, step, y_pos, nseg), row_key=np.concatenate(rkey), step_key=sk,
        x_session=sess, x_step=step, x_frac=frac, y_pos=y_pos, target_kwh=target, col=col, n_sessions=k, horizon=h,
    )


def _peak_rows(g: LpGrid, s: LpSessions, sess: np.ndarray, step: np.ndarray, frac: np.ndarray, y_pos: np.ndarray,
               col: dict[str, slice], hr: np.ndarray, r0: int, add, rlb: list, rub: list, rkey: list) -> int:
    """The site's limits with every session at the power it draws while plugged in (x / availability).

    Charging and discharging are bounded apart (a car that charges in part of a step does not offset
    one that discharges in another part), so every real step inside a coarse one keeps the limits.
    """
    h = g.horizon
    tt = np.arange(h)
    sk = _step_key(g)
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
    rkey.append(_key(9, np.repeat(np.arange(3), h), np.tile(sk, 3)))
    r0 += 3 * h
    # site import: sum x / a - oi <= import limit - household load; EV import: sum x / a <= ev limit
    add(r0 + step, xcol, inv)
    add(r0 + tt, col["oi"].start + tt, -np.ones(h))
    rlb.append(np.full(h, -INF))
    rub.append(g.import_limit_kw - g.base_kw)
    rkey.append(_key(10, 0, sk))
    r0 += h
    add(r0 + step, xcol, inv)
    rlb.append(np.full(h, -INF))
    rub.append(np.asarray(g.ev_import_limit_kw, dtype=float))
    rkey.append(_key(11, 0, sk))
    r0 += h
    # the peak of the real steps: the highest household load plus the EVs at their plugged-in power
    pk = g.base_kw if g.peak_base_kw is None else np.asarray(g.peak_base_kw, dtype=float)
    add(r0 + step, xcol, inv)
    add(r0 + tt, np.full(h, col["P"].start), -np.ones(h))
    rlb.append(np.full(h, -INF))
    rub.append(-pk)
    rkey.append(_key(13, 0, sk))
    r0 += h
    if y_pos.size:  # discharge: sum y / a <= site export room and the EV export limit
        yinv = inv[y_pos]
        add(r0 + step[y_pos], ycol, yinv)
        rlb.append(np.full(h, -INF))
        rub.append(np.minimum(g.export_limit_kw + g.base_kw, g.ev_export_limit_kw))
        rkey.append(_key(12, 0, sk))
        r0 += h
    return r0


def _key(kind: int, entity: np.ndarray | int, step: np.ndarray | int) -> np.ndarray:
    """kind (8 bits) | entity (24 bits) | step key (32 bits)."""
    ent = np.asarray(entity, dtype=np.int64)
    st = np.asarray(step, dtype=np.int64)
    return np.atleast_1d((np.int64(kind) << np.int64(56)) | (ent << np.int64(32)) | st)


def _column_keys(g: LpGrid, s: LpSessions, sess: np.ndarray, step: np.ndarray, y_pos: np.ndarray,
                 nseg: int) -> np.ndarray:
    uid = _uid(s)
    sk = _step_key(g)
    h, tt = g.horizon, np.arange(g.horizon)
    ph, tph = np.repeat(np.arange(3), h), np.tile(tt, 3)
    return np.concatenate([
        _key(1, uid[sess], sk[step]), _key(2, uid[sess[y_pos]], sk[step[y_pos]]),
        _key(3, uid[sess[y_pos]], sk[step[y_pos]]), _key(4, uid, 0),
        _key(5, ph, sk[tph]), _key(6, ph, sk[tph]), _key(7, 0, sk),
        _key(8, np.tile(np.arange(nseg), h), sk[np.repeat(tt, nseg)]),
        _key(9, 0, sk), _key(10, 0, sk), _key(11, 0, 0), _key(12, np.arange(2), 0),
        _key(13, 0, sk), _key(14, 0, sk),
    ])


def _uid(s: LpSessions) -> np.ndarray:
    return np.arange(s.k, dtype=np.int64) if s.uid is None else np.asarray(s.uid, dtype=np.int64)


def _step_key(g: LpGrid) -> np.ndarray:
    return np.arange(g.horizon, dtype=np.int64) if g.step_key is None else np.asarray(g.step_key, dtype=np.int64)


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
