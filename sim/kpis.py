"""Key performance indicators (`youxu.kpis/1`) from a scenario and what each session drew."""

from __future__ import annotations

import numpy as np

from youxu.sim.physics import SitePhysics, scenario_piles
from youxu.sim.scenario import Scenario

KPI_FORMAT = "youxu.kpis/1"
VIOLATION_TOL_KW = 0.1
SERVED_FRACTION = 0.99
ROW_CHUNK = 4_000_000  # schedule rows summed at a time


def _r(x: float, nd: int = 3) -> float:
    return float(round(float(x), nd))


def per_step_kw(n_steps: int, sched_step: np.ndarray, weights: np.ndarray,
                group: np.ndarray | None = None, n_groups: int = 1) -> np.ndarray:
    """Sum `weights` per step (and per group when given): shape (n_steps,) or (n_steps, n_groups).

    Chunked over the rows, so a year of schedule rows needs no (steps x piles) matrix."""
    out = np.zeros(n_steps * n_groups)
    for a in range(0, sched_step.size, ROW_CHUNK):
        b = a + ROW_CHUNK
        idx = sched_step[a:b].astype(np.int64)
        if group is not None:
            idx = idx * n_groups + group[a:b]
        out += np.bincount(idx, weights=weights[a:b], minlength=out.size)
    return out if group is None else out.reshape(n_steps, n_groups)


def site_series(sc: Scenario, sched_step: np.ndarray, sched_pile: np.ndarray, sched_kw: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per step: base kW, EV kW, total kW, and per-phase total kW (n_steps, 3)."""
    share = scenario_piles(sc).phase_share
    kinds, kind_of_pile = np.unique(share, axis=0, return_inverse=True)  # single-phase L1/L2/L3, 3-phase
    by_kind = per_step_kw(sc.n_steps, sched_step, sched_kw, kind_of_pile.reshape(-1)[sched_pile], len(kinds))
    base_phase = sc.base_phase_kw()
    base = base_phase.sum(axis=1)
    ev = by_kind.sum(axis=1)
    phase_total = base_phase + by_kind @ kinds
    return base, ev, base + ev, phase_total


def delivered_per_session_kwh(sc: Scenario, sched_session: np.ndarray, sched_kw: np.ndarray) -> np.ndarray:
    return np.bincount(sched_session, weights=sched_kw, minlength=len(sc.sessions)) * (sc.step_s / 3600.0)


def session_targets_kwh(sc: Scenario) -> np.ndarray:
    """What each session is owed: its request, or the most its pile could deliver in its window if less."""
    if not sc.sessions:
        return np.zeros(0)
    requested = np.array([s.energy_kwh for s in sc.sessions], dtype=float)
    return np.minimum(requested, SitePhysics(sc).deliverable_kwh())


def ev_cost_yuan(sc: Scenario, sched_step: np.ndarray, sched_kw: np.ndarray) -> float:
    """The EVs' own net energy cost: charging at the import price, V2G discharge at the export price."""
    step = sched_step.astype(np.int64)
    imp, exp = sc.import_price()[step], sc.export_price()[step]
    return float((np.clip(sched_kw, 0.0, None) * imp - np.clip(-sched_kw, 0.0, None) * exp).sum()
                 * sc.step_s / 3600.0)


def compute_kpis(sc: Scenario, strategy: str, sched_step: np.ndarray, sched_session: np.ndarray,
                 sched_pile: np.ndarray, sched_kw: np.ndarray, plan_ms: list[float] | None = None,
                 plan_fallbacks: int = 0, wall_s: float = 0.0,
                 series: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict:
    """The `youxu.kpis/1` object; `series` is `site_series` of these rows when the caller has it."""
    from youxu.sim.dispatch_arrays import scenario_dispatch_fn

    dt_h = sc.step_s / 3600.0
    base, ev, total, phase_total = series or site_series(sc, sched_step, sched_pile, sched_kw)
    n_sess = len(sc.sessions)
    delivered = delivered_per_session_kwh(sc, sched_session, sched_kw)
    requested = np.array([s.energy_kwh for s in sc.sessions], dtype=float)
    served = delivered >= SERVED_FRACTION * session_targets_kwh(sc) - 1e-9
    over = total - sc.site.hard_limit_kw
    violation = over > VIOLATION_TOL_KW
    excess = [over]
    plim = sc.phase_limits_kw()
    if plim is not None:
        pover = phase_total - plim
        violation |= (pover > VIOLATION_TOL_KW).any(axis=1)
        excess.append(pover.max(axis=1))
    max_violation = float(np.max(np.maximum(np.max(np.stack(excess), axis=0), 0.0))) if total.size else 0.0
    imp_price, exp_price = sc.import_price(), sc.export_price()
    epoch = sc.start.timestamp() + sc.step_times_s()
    d = scenario_dispatch_fn(sc)(epoch)
    disp_excess = np.concatenate([
        total - d.site_import_max_kw, -total - d.site_export_max_kw,
        ev - d.ev_import_max_kw, -ev - d.ev_export_max_kw,
    ])
    disp_excess = disp_excess[np.isfinite(disp_excess)]
    dispatch_max_excess = float(max(0.0, disp_excess.max())) if disp_excess.size else 0.0
    sp_mask = np.isfinite(d.setpoint_kw)
    if sp_mask.any():
        tracked = total if d.setpoint_scope == "site" else ev
        rmse = float(np.sqrt(np.mean((tracked[sp_mask] - d.setpoint_kw[sp_mask]) ** 2)))
    else:
        rmse = None
    from youxu.sim.thermal import thermal_series

    heat = thermal_series(sc, total)
    pm = np.asarray(plan_ms or [0.0])
    v2g = float(np.clip(-sched_kw, 0.0, None).sum() * dt_h)
    ev_cost = ev_cost_yuan(sc, sched_step, sched_kw)
    out = {
        "format": KPI_FORMAT,
        "strategy": strategy,
        "scenario": sc.name,
        "energy_requested_kwh": _r(requested.sum()),
        "energy_delivered_kwh": _r(delivered.sum()),
        "unmet_energy_kwh": _r(np.clip(requested - delivered, 0.0, None).sum()),
        "sessions_total": n_sess,
        "sessions_fully_served": int(served.sum()),
        "peak_total_kw": _r(total.max()),
        "peak_base_kw": _r(base.max()),
        "valley_total_kw": _r(total.min()),
        "peak_to_valley_kw": _r(total.max() - total.min()),
        "limit_violation_steps": int(violation.sum()),
        "max_violation_kw": _r(max_violation),
        "import_cost_yuan": _r((np.clip(total, 0.0, None) * imp_price).sum() * dt_h, 2),
        "export_revenue_yuan": _r((np.clip(-total, 0.0, None) * exp_price).sum() * dt_h, 2),
        "v2g_discharged_kwh": _r(v2g),
        "ev_cost_yuan": _r(ev_cost, 2),
        "dispatch_max_excess_kw": _r(dispatch_max_excess),
        "dispatch_tracking_rmse_kw": None if rmse is None else _r(rmse),
        "plan_ms_p50": _r(np.percentile(pm, 50)),
        "plan_ms_p99": _r(np.percentile(pm, 99)),
        "plan_fallbacks": int(plan_fallbacks),
        "wall_s": _r(wall_s, 2),
    }
    if heat is not None:
        top, hot, ageing_h = heat
        out.update(hotspot_max_c=_r(hot.max(), 2), top_oil_max_c=_r(top.max(), 2), ageing_h=_r(ageing_h, 4))
    return out
