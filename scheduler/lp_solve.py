"""Solve a built LP with OR-Tools (MathOpt: GLOP by default, PDLP or HiGHS) and read the powers back.

GLOP runs without presolve, so a warm start's basis (`youxu.scheduler.lp_warm`) is used as given;
from a warm basis it prices with Devex, since a few pivots do not repay exact steepest-edge
norms. Only an optimal solution is used; a solve cut short by its time limit still leaves its
basis in the warm start, so the next plan continues from where this one stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.glop import parameters_pb2 as glop_pb2
from ortools.math_opt import callback_pb2, model_parameters_pb2, model_pb2, parameters_pb2, result_pb2
from ortools.math_opt.core.python import solver as mo_solver

from youxu.scheduler.lp_basis import SavedBasis, map_basis
from youxu.scheduler.lp_build import LpProblem
from youxu.scheduler.lp_warm import WarmStart

SOLVERS = {
    "GLOP": parameters_pb2.SOLVER_TYPE_GLOP,
    "PDLP": parameters_pb2.SOLVER_TYPE_PDLP,
    "HIGHS": parameters_pb2.SOLVER_TYPE_HIGHS,
}
# Devex only when nothing but numbers changed since an optimum: from a basis that had to be repaired (a car came
# or went, the horizon moved on) it can take thousands of pivots where steepest edge takes tens
COLD_START_SOLVER = "HIGHS"
NEAR_OPTIMAL_CHANGE = 0.0  # share of rows that may have changed for a warm basis to count as near the optimum
_REASONS = {
    result_pb2.TERMINATION_REASON_FEASIBLE: "timeout",  # stopped early with a feasible, not optimal, point
    result_pb2.TERMINATION_REASON_INFEASIBLE: "infeasible",
    result_pb2.TERMINATION_REASON_UNBOUNDED: "unbounded",
    result_pb2.TERMINATION_REASON_INFEASIBLE_OR_UNBOUNDED: "infeasible",
    result_pb2.TERMINATION_REASON_IMPRECISE: "imprecise",
    result_pb2.TERMINATION_REASON_NO_SOLUTION_FOUND: "timeout",
    result_pb2.TERMINATION_REASON_NUMERICAL_ERROR: "numerical-error",
    result_pb2.TERMINATION_REASON_OTHER_ERROR: "error",
}


@dataclass
class LpResult:
    status: str  # optimal | timeout | infeasible | ... (only optimal is used)
    values: np.ndarray | None
    objective: float = float("nan")
    load_ms: float = 0.0  # handing the arrays to the solver
    solve_ms: float = 0.0
    iterations: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "optimal" and self.values is not None


def model_proto(prob: LpProblem) -> model_pb2.ModelProto:
    """The LP as a MathOpt model (packed arrays, no per-element Python objects)."""
    m = model_pb2.ModelProto()
    n, r = prob.n_cols, prob.n_rows
    v = m.variables
    v.ids.extend(range(n))
    v.lower_bounds.extend(prob.lb.tolist())
    v.upper_bounds.extend(prob.ub.tolist())
    v.integers.extend([False] * n)
    nz = np.flatnonzero(prob.c)
    m.objective.linear_coefficients.ids.extend(nz.tolist())
    m.objective.linear_coefficients.values.extend(prob.c[nz].tolist())
    c = m.linear_constraints
    c.ids.extend(range(r))
    c.lower_bounds.extend(prob.row_lb.tolist())
    c.upper_bounds.extend(prob.row_ub.tolist())
    rows = np.repeat(np.arange(r, dtype=np.int64), np.diff(prob.a_indptr))
    order = np.lexsort((prob.a_indices, rows))  # MathOpt wants the matrix sorted by (row, column)
    a = m.linear_constraint_matrix
    a.row_ids.extend(rows[order].tolist())
    a.column_ids.extend(prob.a_indices[order].astype(np.int64).tolist())
    a.coefficients.extend(prob.a_data[order].tolist())
    return m


def _basis_proto(col: np.ndarray, row: np.ndarray) -> model_parameters_pb2.ModelSolveParametersProto:
    mp = model_parameters_pb2.ModelSolveParametersProto()
    b = mp.initial_basis
    b.variable_status.ids.extend(range(col.size))
    b.variable_status.values.extend(col.tolist())
    b.constraint_status.ids.extend(range(row.size))
    b.constraint_status.values.extend(row.tolist())
    return mp


def _params(solver: str, time_limit_s: float, near_optimal: bool) -> parameters_pb2.SolveParametersProto:
    params = parameters_pb2.SolveParametersProto()
    params.time_limit.FromNanoseconds(max(int(time_limit_s * 1e9), 100_000))
    if solver == "GLOP":
        params.glop.use_preprocessing = False  # faster here, and presolve would set a given basis aside
        if near_optimal:
            params.glop.optimization_rule = glop_pb2.GlopParameters.DEVEX
            params.glop.feasibility_rule = glop_pb2.GlopParameters.DEVEX
    elif solver == "HIGHS":
        params.presolve = parameters_pb2.EMPHASIS_OFF
    elif solver == "PDLP":
        params.pdlp.termination_criteria.simple_optimality_criteria.eps_optimal_relative = 1e-6
        params.pdlp.termination_criteria.simple_optimality_criteria.eps_optimal_absolute = 1e-6
    return params


def solve_lp(prob: LpProblem, solver: str = "GLOP", time_limit_s: float = 1.0,
             warm: WarmStart | None = None) -> LpResult:
    """Solve `prob`; `time_limit_s` covers handing the model over and solving it.

    With `warm` (GLOP only) the simplex starts from the last basis and leaves its own there.
    Without a basis yet, the first solve goes to HiGHS, whose dual simplex is 2-3 times faster
    than GLOP from scratch on these LPs; its basis (optimal or where it stopped) starts GLOP next.
    """
    t0 = time.perf_counter()
    use_warm = warm is not None and solver == "GLOP"
    started_warm = use_warm and warm is not None and warm.saved is not None
    if use_warm and not started_warm:
        solver = COLD_START_SOLVER
    mparams = model_parameters_pb2.ModelSolveParametersProto()
    near_optimal = False
    if started_warm and warm is not None and warm.saved is not None:
        col, row, warm.last_changed = map_basis(warm.saved, prob)
        mparams = _basis_proto(col, row)
        # Devex pays off for the few pivots from the last optimum; a long way to go (a cut-short solve,
        # anything new or gone) goes faster with exact steepest-edge pricing
        near_optimal = warm.saved_optimal and warm.last_changed <= NEAR_OPTIMAL_CHANGE * prob.n_rows
    try:
        s = mo_solver.new(SOLVERS[solver], model_proto(prob), parameters_pb2.SolverInitializerProto())
        t1 = time.perf_counter()
        params = _params(solver, time_limit_s - (t1 - t0), near_optimal)
        res = s.solve(params, mparams, None, callback_pb2.CallbackRegistrationProto(), None, None)
    except Exception as exc:  # MathOpt's StatusNotOk (say, a basis it rejects) is not importable by name
        if warm is not None:
            warm.forget()
        return LpResult(f"error:{type(exc).__name__}", None, load_ms=(time.perf_counter() - t0) * 1e3)
    t2 = time.perf_counter()
    sol = res.solutions[0] if len(res.solutions) else None
    iterations = int(res.solve_stats.simplex_iterations + res.solve_stats.first_order_iterations
                     + res.solve_stats.barrier_iterations)
    if use_warm and warm is not None:
        _keep_basis(warm, prob, sol, started_warm, iterations,
                    res.termination.reason == result_pb2.TERMINATION_REASON_OPTIMAL)
    load_ms, solve_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
    reason = res.termination.reason
    if reason == result_pb2.TERMINATION_REASON_OPTIMAL and sol is not None and sol.HasField("primal_solution"):
        values = np.asarray(sol.primal_solution.variable_values.values, dtype=float)
        if values.size == prob.n_cols:
            return LpResult("optimal", values, float(sol.primal_solution.objective_value), load_ms, solve_ms,
                            iterations)
    name = _REASONS.get(reason, "unknown")
    if res.termination.limit == result_pb2.LIMIT_TIME:
        name = "timeout"
    return LpResult(name, None, load_ms=load_ms, solve_ms=solve_ms, iterations=iterations)


def _keep_basis(warm: WarmStart, prob: LpProblem, sol: object, started_warm: bool, iterations: int,
                optimal: bool) -> None:
    warm.solves += 1
    warm.warm_solves += int(started_warm)
    warm.last_iterations = iterations
    if sol is None or not sol.HasField("basis"):  # type: ignore[attr-defined]
        return
    basis = sol.basis  # type: ignore[attr-defined]
    cst = np.asarray(basis.variable_status.values, dtype=np.int64)
    rst = np.asarray(basis.constraint_status.values, dtype=np.int64)
    if cst.size == prob.n_cols and rst.size == prob.n_rows:
        warm.saved = SavedBasis.of(prob, cst, rst)
        warm.saved_optimal = optimal


def session_power_kw(prob: LpProblem, values: np.ndarray) -> np.ndarray:
    """(K, H) net power of every session (charging minus discharging) while its car is plugged in.

    In a step the car only partly spends plugged in (it arrives or leaves inside it) this is the
    LP's step average divided by that share: the power to set while the car is there.
    """
    out = np.zeros((prob.n_sessions, prob.horizon))
    x = values[prob.col["x"]].copy()
    x[prob.y_pos] -= values[prob.col["y"]]
    x = np.where(prob.x_frac > 1e-9, x / np.where(prob.x_frac > 1e-9, prob.x_frac, 1.0), 0.0)
    out[prob.x_session, prob.x_step] = x  # one column per session-step
    return out


def unmet_kwh(prob: LpProblem, values: np.ndarray) -> np.ndarray:
    return np.maximum(values[prob.col["u"]], 0.0)
