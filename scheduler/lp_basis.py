"""Carry a simplex basis from one plan's LP to the next one's, by element key.

What changes between two plans, and how the basis follows:
  - the same element (same key): keeps its status;
  - the horizon moved on by a step: the new last step copies the step before it, and a
    session's basic column in the step that passed is handed to the new first step;
  - a session arrived: it starts from a sensible vertex of its own rows (full power in the
    steps with the lowest household load until its energy is met, one step fractional and
    basic, battery states basic) so its rows are balanced and feasible on their own;
  - a session or a step left: the rows its basic columns held take their slacks into the
    basis, and the count of basic elements is made equal to the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from youxu.scheduler.lp_build import LpProblem

FREE, AT_LOWER, AT_UPPER, FIXED, BASIC = 1, 2, 3, 4, 5  # MathOpt's BasisStatusProto
U_KIND = 4  # kind of lp_build's unmet-energy column keys
SESSION_STEP_KINDS = (1, 2, 3)  # charging, discharging and battery-state columns (per session and step)
ENERGY_ROW_KIND, FAIR_ROW_KIND = 1, 2  # kinds of its row keys
_SHIFT = np.int64(56)
_STEP_MASK = np.int64((1 << 32) - 1)


@dataclass(frozen=True)
class SavedBasis:
    col_key: np.ndarray  # sorted
    col_status: np.ndarray
    row_key: np.ndarray  # sorted
    row_status: np.ndarray
    basic_col_key: np.ndarray  # entries of the basic columns: column key, row key, coefficient
    basic_row_key: np.ndarray
    basic_val: np.ndarray

    @staticmethod
    def of(prob: LpProblem, col_status: np.ndarray, row_status: np.ndarray) -> SavedBasis:
        oc, orow = np.argsort(prob.col_key), np.argsort(prob.row_key)
        rows = np.repeat(np.arange(prob.n_rows), np.diff(prob.a_indptr))
        basic = col_status[prob.a_indices] == BASIC
        return SavedBasis(
            col_key=prob.col_key[oc], col_status=col_status[oc],
            row_key=prob.row_key[orow], row_status=row_status[orow],
            basic_col_key=prob.col_key[prob.a_indices[basic]], basic_row_key=prob.row_key[rows[basic]],
            basic_val=prob.a_data[basic],
        )


def kind_of(keys: np.ndarray) -> np.ndarray:
    return keys >> _SHIFT


def lookup(keys: np.ndarray, values: np.ndarray, want: np.ndarray) -> np.ndarray:
    """values[key] for each wanted key in the sorted `keys`, 0 where absent."""
    if keys.size == 0:
        return np.zeros(want.size, dtype=values.dtype)
    pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    return np.where(keys[pos] == want, values[pos], 0)


def carry(keys: np.ndarray, status: np.ndarray, new_keys: np.ndarray, step_keys: np.ndarray) -> np.ndarray:
    """Old statuses by key; an element of a new step takes its own status one step earlier."""
    out = lookup(keys, status, new_keys).astype(np.int64)
    miss = np.flatnonzero(out == 0)
    if miss.size and step_keys.size > 1:
        order = np.sort(step_keys)
        st = new_keys[miss] & _STEP_MASK
        i = np.searchsorted(order, st)
        has_prev = (i > 0) & (i < order.size) & (order[np.minimum(i, order.size - 1)] == st)
        alt = (new_keys[miss] & ~_STEP_MASK) | order[np.maximum(i - 1, 0)]
        out[miss] = np.where(has_prev, lookup(keys, status, alt), 0)
    return out


def natural(lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    fin_l, fin_u = np.isfinite(lb), np.isfinite(ub)
    fixed = fin_l & fin_u & (lb == ub)
    return np.where(fixed, FIXED, np.where(fin_l, AT_LOWER, np.where(fin_u, AT_UPPER, FREE)))


def consistent(st: np.ndarray, lb: np.ndarray, ub: np.ndarray, new_status: int = 0) -> np.ndarray:
    """Non-basic statuses that name a bound the element has; unknown ones `new_status` or their natural bound."""
    fin_l, fin_u = np.isfinite(lb), np.isfinite(ub)
    fixed = fin_l & fin_u & (lb == ub)
    nat = natural(lb, ub)
    out = np.where(st == 0, new_status if new_status else nat, st)
    nonbasic = out != BASIC
    bad = nonbasic & (((out == AT_LOWER) & ~fin_l) | ((out == AT_UPPER) & ~fin_u) | ((out == FIXED) & ~fixed)
                      | ((out == FREE) & (fin_l | fin_u)))
    return np.where(bad | (nonbasic & fixed), nat, out).astype(np.int64)


def _new_sessions(col: np.ndarray, row: np.ndarray, prob: LpProblem) -> None:
    """Sessions the last basis did not know start with their energy unmet (in place).

    Their unmet energy is basic and their energy row tight; the simplex then moves the energy
    into the steps where it fits best. (Starting them at full power in the emptiest steps was
    tried: it breaks limits in those steps and costs more pivots than it saves.)
    """
    new_u = (col == 0) & (kind_of(prob.col_key) == U_KIND)
    col[new_u] = BASIC
    row[(row == 0) & (kind_of(prob.row_key) == ENERGY_ROW_KIND)] = AT_LOWER


def pass_on_passed_step(saved: SavedBasis, prob: LpProblem, col: np.ndarray) -> np.ndarray:
    """A session's basic column in the step that has passed hands its place to the same column of the
    step that is now first (in place); returns the keys handed over.

    The step that just ended held the decisions of the moment: a session charging at a fractional
    power there is the one that now does so in the new first step.
    """
    if prob.step_key.size == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.int64(np.min(prob.step_key))
    basic = saved.col_status == BASIC
    keys = saved.col_key[basic]
    kinds = kind_of(keys)
    passed = np.isin(kinds, SESSION_STEP_KINDS) & ((keys & _STEP_MASK) < first)
    keys = keys[passed]
    if keys.size == 0:
        return keys
    target = (keys & ~_STEP_MASK) | first
    order = np.argsort(prob.col_key)
    pos = np.minimum(np.searchsorted(prob.col_key[order], target), prob.n_cols - 1)
    found = prob.col_key[order][pos] == target
    idx = order[pos[found]]
    free = col[idx] != BASIC
    col[idx[free]] = BASIC
    return keys[found][free]


def affected_rows(saved: SavedBasis, prob: LpProblem, handed_over: np.ndarray) -> np.ndarray:
    """Rows of `prob` that held a basic column of the last basis which is now gone (and not handed over)."""
    gone = lookup(np.sort(prob.col_key), np.ones(prob.n_cols, dtype=np.int64), saved.basic_col_key) == 0
    gone &= ~np.isin(saved.basic_col_key, handed_over)
    if not gone.any():
        return np.zeros(0, dtype=np.int64)
    rk = np.unique(saved.basic_row_key[gone])
    order = np.argsort(prob.row_key)
    pos = np.minimum(np.searchsorted(prob.row_key[order], rk), prob.n_rows - 1)
    return order[pos[prob.row_key[order][pos] == rk]]


def balance(col: np.ndarray, row: np.ndarray, prob: LpProblem, affected: np.ndarray) -> None:
    """Make the number of basic elements equal the number of rows (in place).

    Too few (basic columns left with their session or step): the slacks of the rows they held
    enter first, then fairness rows (degenerate while nothing is unmet), then any row. Too many:
    fairness rows leave first, then other rows with a bound, then columns.
    """
    excess = int((col == BASIC).sum() + (row == BASIC).sum()) - prob.n_rows
    fair = kind_of(prob.row_key) == FAIR_ROW_KIND
    if excess < 0:
        first = np.zeros(prob.n_rows, dtype=bool)
        first[affected] = True
        cand = np.concatenate([np.flatnonzero(first & (row != BASIC)), np.flatnonzero(~first & fair & (row != BASIC)),
                               np.flatnonzero(~first & ~fair & (row != BASIC))])
        row[cand[:-excess]] = BASIC
        return
    bounded = np.isfinite(prob.row_lb) | np.isfinite(prob.row_ub)
    cand = np.concatenate([np.flatnonzero(fair & (row == BASIC) & bounded),
                           np.flatnonzero(~fair & (row == BASIC) & bounded)])[:excess]
    row[cand] = natural(prob.row_lb[cand], prob.row_ub[cand])
    excess -= cand.size
    if excess > 0:
        bounded = np.isfinite(prob.lb) | np.isfinite(prob.ub)
        idx = np.flatnonzero((col == BASIC) & bounded)[:excess]
        col[idx] = natural(prob.lb[idx], prob.ub[idx])


def map_basis(saved: SavedBasis, prob: LpProblem) -> tuple[np.ndarray, np.ndarray, int]:
    """(column statuses, row statuses, how much changed) for `prob`.

    What changed counts the elements the last basis did not know and the rows that lost a basic column.
    """
    col = carry(saved.col_key, saved.col_status, prob.col_key, prob.step_key)
    row = carry(saved.row_key, saved.row_status, prob.row_key, prob.step_key)
    unknown = int((col == 0).sum() + (row == 0).sum())
    _new_sessions(col, row, prob)
    handed_over = pass_on_passed_step(saved, prob, col)
    col = consistent(col, prob.lb, prob.ub)
    row = consistent(row, prob.row_lb, prob.row_ub, BASIC)
    affected = affected_rows(saved, prob, handed_over)
    balance(col, row, prob, affected)
    return col, row, unknown + int(affected.size)
