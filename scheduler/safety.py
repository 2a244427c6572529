"""The safety layer: the last word on every setpoint, from measured values only.

Whatever the allocator or planner asks for, the setpoints written to the piles keep the
projected transformer load (measured household load + piles at their new setpoints)
under the import limit and every phase under its limit, the site and the EV aggregate
within their export caps, and every pile at 0 or at least its minimum. Reductions hit
normal sessions first and urgent sessions only when that is not enough.
"""

from __future__ import annotations

import numpy as np

from youxu.scheduler.model import HardLimits, Piles, Snapshot

TOL_KW = 1e-6


def _cut(sp: np.ndarray, coef: np.ndarray, excess: float, group: np.ndarray,
         min_kw: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale down the positive setpoints in `group` weighted by `coef` until `excess` is gone."""
    pos = group & (sp > 0) & (coef > 0)
    load = float((sp[pos] * coef[pos]).sum())
    if load <= TOL_KW:
        return sp, excess
    f = max(0.0, 1.0 - excess / load)
    out = sp.copy()
    out[pos] = sp[pos] * f
    out[pos & (out < min_kw - TOL_KW)] = 0.0  # the dead band: below the minimum means off
    freed = float(((sp - out) * coef)[pos].sum())
    return out, excess - freed


def _cut_discharge(sp: np.ndarray, excess: float, min_kw: np.ndarray) -> np.ndarray:
    """Bring discharging setpoints towards zero until `excess` kW less is exported."""
    neg = sp < 0
    load = float(-sp[neg].sum())
    if load <= TOL_KW:
        return sp
    f = max(0.0, 1.0 - excess / load)
    out = sp.copy()
    out[neg] = sp[neg] * f
    out[neg & (-out < min_kw - TOL_KW)] = 0.0
    return out


def _reduce_import(sp: np.ndarray, coef: np.ndarray, excess: float, urgent: np.ndarray,
                   min_kw: np.ndarray) -> np.ndarray:
    sp, excess = _cut(sp, coef, excess, ~urgent, min_kw)
    if excess > TOL_KW:
        sp, _ = _cut(sp, coef, excess, urgent, min_kw)
    return sp


def enforce(setpoints_kw: np.ndarray, piles: Piles, snap: Snapshot, limits: HardLimits,
            urgent: np.ndarray | None = None) -> np.ndarray:
    """Setpoints that keep the projected site within every hard limit."""
    n = piles.n
    urgent = np.zeros(n, dtype=bool) if urgent is None else urgent
    sp = np.asarray(setpoints_kw, dtype=float).copy()
    # no discharge without V2G, nothing above a pile's rating, nothing inside the dead band
    sp = np.clip(sp, -piles.max_discharge_kw * piles.v2g, piles.max_kw)
    sp[(sp > 0) & (sp < piles.min_kw - TOL_KW)] = 0.0
    sp[(sp < 0) & (-sp < piles.min_kw - TOL_KW)] = 0.0
    fixed = snap.assumed_kw
    steered = np.ones(n, dtype=bool) if snap.fixed_kw is None else np.isnan(snap.fixed_kw)
    sp[~steered] = 0.0  # we cannot steer them; their assumed power is in `fixed`
    share = piles.phase_share
    base = snap.base_kw
    base_phase = snap.base_phase_kw(share)
    ones = np.ones(n)
    for _ in range(12):
        changed = False
        total = base + fixed.sum() + sp.sum()
        if total > limits.import_kw + TOL_KW:
            sp = _reduce_import(sp, ones, total - limits.import_kw, urgent, piles.min_kw)
            changed = True
        ev = fixed.sum() + sp.sum()
        if ev > limits.ev_import_kw + TOL_KW:
            sp = _reduce_import(sp, ones, ev - limits.ev_import_kw, urgent, piles.min_kw)
            changed = True
        if limits.phase_kw is not None:
            phase = base_phase + (fixed + sp) @ share
            over = phase - limits.phase_kw
            j = int(np.argmax(over))
            if over[j] > TOL_KW:
                sp = _reduce_import(sp, share[:, j], float(over[j]), urgent, piles.min_kw)
                changed = True
        total = base + fixed.sum() + sp.sum()
        if total < -limits.export_kw - TOL_KW:
            sp = _cut_discharge(sp, -limits.export_kw - total, piles.min_kw)
            changed = True
        ev = fixed.sum() + sp.sum()
        if ev < -limits.ev_export_kw - TOL_KW:
            sp = _cut_discharge(sp, -limits.ev_export_kw - ev, piles.min_kw)
            changed = True
        if not changed:
            break
    else:  # could not converge: everything controllable off (always within import limits)
        sp = np.where(sp > 0, 0.0, sp)
    return sp

