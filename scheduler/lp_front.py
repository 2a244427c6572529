"""The perfect-foresight front: the lowest peak at a cost cap, the cheapest plan at a peak cap.

Peak and cost pull against each other, so the yardstick for a run is two LPs over the same
columns and rows as the offline optimum (`youxu.scheduler.lp_build.build_lp`), each with one
objective and one cap, both delivering at least the run's own net energy:

  lowest peak:   min P                        s.t. EV cost <= cost cap,  EV energy >= energy
  cheapest plan: min EV cost                  s.t. P <= peak cap,        EV energy >= energy

EV cost is the cars' own net energy cost: charging at the import price, V2G discharge at the
export price. Every per-session row (window, battery, request cap) and every site row (import,
phase, export and dispatch limits) stays as built; what the run's own objective priced (unmet
energy, valley filling, fairness, delay) is dropped. A cap or the energy the LP cannot reach is
carried by a slack at a steep price, so the LP always answers and says how far it fell short.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from youxu.scheduler.lp_model import LpGrid, LpProblem
from youxu.scheduler.lp_solve import solve_lp

CAP_OVER_PER_UNIT = 1.0e4  # per yuan or kW over the cap
SHORT_PER_KWH = 1.0e5  # per kWh short of the energy: equal energy comes first, then the cap
LIMIT_PER_KWH = 1.0e6  # overflow of a hard limit (only where the household load alone is over it)
TIE_BREAK = 1.0e-3  # the other objective, to pick one plan among equals


@dataclass(frozen=True)
class FrontPoint:
    """One LP's answer: its plan's peak and EV cost, and how much of the energy floor or cap it missed."""

    peak_kw: float
    ev_cost_yuan: float
    energy_kwh: float
    energy_short_kwh: float
    cap_over: float  # yuan (cost cap) or kW (peak cap) beyond the cap
    status: str


def _cost_coeffs(g: LpGrid, prob: LpProblem) -> np.ndarray:
    """(n_cols,) yuan per unit: x at the import price, y (discharge) at minus the export price."""
    c = np.zeros(prob.n_cols)
    dt = g.step_h
    xs = prob.col["x"]
    c[xs] = g.import_price[prob.x_step] * dt[prob.x_step]
    ys = prob.col["y"]
    yt = prob.x_step[prob.y_pos]
    c[ys] = -g.export_price[yt] * dt[yt]
    return c


def _energy_coeffs(g: LpGrid, prob: LpProblem) -> np.ndarray:
    c = np.zeros(prob.n_cols)
    c[prob.col["x"]] = g.step_h[prob.x_step]
    c[prob.col["y"]] = -g.step_h[prob.x_step[prob.y_pos]]
    return c


def _with_rows(prob: LpProblem, dense_rows: list[np.ndarray], row_lb: list[float], row_ub: list[float],
               slack_signs: list[float]) -> LpProblem:
    """`prob` with one slack column per new row (coefficient `slack_sign`) and the rows appended."""
    n0, m = prob.n_cols, len(dense_rows)
    data, indices, indptr = [prob.a_data], [prob.a_indices], [prob.a_indptr]
    end = int(prob.a_indptr[-1])
    for i, (row, sign) in enumerate(zip(dense_rows, slack_signs, strict=True)):
        nz = np.flatnonzero(row)
        data.append(np.concatenate([row[nz], [sign]]))
        indices.append(np.concatenate([nz, [n0 + i]]).astype(np.int32))
        end += nz.size + 1
        indptr.append(np.array([end], dtype=np.int64))
    return replace(
        prob,
        c=np.concatenate([prob.c, np.zeros(m)]),
        lb=np.concatenate([prob.lb, np.zeros(m)]),
        ub=np.concatenate([prob.ub, np.full(m, np.inf)]),
        row_lb=np.concatenate([prob.row_lb, row_lb]),
        row_ub=np.concatenate([prob.row_ub, row_ub]),
        a_data=np.concatenate(data),
        a_indices=np.concatenate(indices),
        a_indptr=np.concatenate(indptr),
        col_key=np.concatenate([prob.col_key, np.full(m, -1, dtype=np.int64)]),
        row_key=np.concatenate([prob.row_key, np.full(m, -1, dtype=np.int64)]),
    )


def front_point(g: LpGrid, prob: LpProblem, energy_kwh: float, *, cost_cap_yuan: float | None = None,
                peak_cap_kw: float | None = None, time_limit_s: float = 300.0) -> FrontPoint:
    """The lowest peak at `cost_cap_yuan`, or the cheapest plan at `peak_cap_kw` (exactly one of them).

    `prob` is `build_lp(g, sessions)` with `peak_coupling` (the offline yardstick's LP)."""
    if (cost_cap_yuan is None) == (peak_cap_kw is None):
        raise ValueError("give exactly one of cost_cap_yuan and peak_cap_kw")
    cost = _cost_coeffs(g, prob)
    energy = _energy_coeffs(g, prob)
    p_col = prob.col["P"].start
    peak = np.zeros(prob.n_cols)
    peak[p_col] = 1.0
    # slack 0: energy short of the floor; slack 1: beyond the cap
    if cost_cap_yuan is not None:
        cap_row, cap = cost, float(cost_cap_yuan)
        objective = peak + TIE_BREAK * cost
    else:
        cap_row, cap = peak, float(peak_cap_kw)  # type: ignore[arg-type]
        objective = cost + TIE_BREAK * peak
    out = _with_rows(prob, [energy, cap_row], [float(energy_kwh), -np.inf], [np.inf, cap], [1.0, -1.0])
    c = np.concatenate([objective, [SHORT_PER_KWH, CAP_OVER_PER_UNIT]])
    c[out.col["o"]] = LIMIT_PER_KWH * np.tile(g.step_h, 3)  # a hard limit stays hard unless nothing is left
    c[out.col["oi"]] = LIMIT_PER_KWH * g.step_h
    out.ub[out.col["b"]] = 0.0  # no forecast band: perfect foresight
    out = replace(out, c=c)
    res = solve_lp(out, "GLOP", time_limit_s)
    if not res.ok or res.values is None:
        raise RuntimeError(f"front LP not solved: {res.status} ({out.n_cols} columns, {out.n_rows} rows)")
    v = res.values
    n0 = prob.n_cols
    return FrontPoint(
        peak_kw=float(v[p_col]),
        ev_cost_yuan=float(cost @ v[:n0]),
        energy_kwh=float(energy @ v[:n0]),
        energy_short_kwh=float(max(v[n0], 0.0)),
        cap_over=float(max(v[n0 + 1], 0.0)),
        status=res.status,
    )
