"""What is in force: dispatch commands combined into limit and setpoint arrays over time.

The one place where commands meet (pure, vectorised over any times `t_s`):
- every limit in force applies, per scope and direction; the tightest wins;
- among setpoints the lowest `priority` number wins, then the higher `seq`;
- the `default` limit applies at the times no command covers, and everywhere while the link to the
  grid is lost (alongside commands still in force); without a default the configured fallback
  limit applies while the link is lost.

Each period of a command lasts until the next period's start or the command's effective end
(its `valid_until`, or earlier when it was superseded or cancelled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from youxu.controller.grid.dispatch_schema import DispatchCommand
from youxu.controller.gridlink import DispatchLimits


@dataclass(frozen=True)
class InForce:
    """A command and the time its force ends (epoch s; inf for open-ended)."""

    cmd: DispatchCommand
    end_s: float = math.inf

    @staticmethod
    def of(cmd: DispatchCommand) -> InForce:
        return InForce(cmd, cmd.end_s)


def coverage(f: InForce, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, period index) for each time: inside where some period of the command is in force."""
    starts = f.cmd.period_starts_s()
    if starts.size == 0:
        return np.zeros(t_s.shape, dtype=bool), np.zeros(t_s.shape, dtype=int)
    idx = np.searchsorted(starts, t_s, side="right") - 1
    inside = (idx >= 0) & (t_s < min(f.end_s, f.cmd.end_s))
    return inside, np.clip(idx, 0, None)


def values_at(f: InForce, t_s: np.ndarray, name: str) -> np.ndarray:
    """The command's `name` (import_max_kw, export_max_kw, setpoint_kw) at each time; NaN where none."""
    inside, idx = coverage(f, t_s)
    vals = f.cmd.period_values(name)
    if vals.size == 0:
        return np.full(t_s.shape, np.nan)
    return np.where(inside, vals[idx], np.nan)


def _tighten(current: np.ndarray, vals: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    cap = np.where(np.isnan(vals), np.inf, vals)
    if mask is not None:
        cap = np.where(mask, cap, np.inf)
    return np.minimum(current, cap)


def _setpoint_order(fs: Sequence[InForce]) -> list[InForce]:
    return sorted(fs, key=lambda f: (f.cmd.priority, -f.cmd.seq))


def winning_setpoints(in_force: Sequence[InForce], t_s: np.ndarray) -> tuple[np.ndarray, list[InForce]]:
    """Index (into the returned ranking) of the setpoint command that wins at each time, -1 where none."""
    ranked = _setpoint_order([f for f in in_force if f.cmd.type == "setpoint"])
    winner = np.full(t_s.shape, -1, dtype=int)
    for k, f in enumerate(ranked):
        inside, _ = coverage(f, t_s)
        winner = np.where((winner < 0) & inside, k, winner)
    return winner, ranked


def dispatch_limits(
    in_force: Sequence[InForce],
    t_s: np.ndarray | Sequence[float] | float,
    *,
    default: DispatchCommand | None = None,
    link_lost: bool = False,
    fallback_limit_kw: float | None = None,
) -> DispatchLimits:
    """Combine the commands in force into `DispatchLimits` at each time of `t_s` (epoch s)."""
    t = np.atleast_1d(np.asarray(t_s, dtype=float))
    inf = np.full(t.shape, np.inf)
    imp = {"site": inf.copy(), "ev": inf.copy()}
    exp = {"site": inf.copy(), "ev": inf.copy()}
    covered = np.zeros(t.shape, dtype=bool)
    active: list[str] = []
    for f in in_force:
        if f.cmd.type not in ("limit", "setpoint"):
            continue
        inside, _ = coverage(f, t)
        covered |= inside
        if t.size and inside[0]:
            active.append(f.cmd.command_id)
        if f.cmd.type == "limit":
            imp[f.cmd.scope] = _tighten(imp[f.cmd.scope], values_at(f, t, "import_max_kw"))
            exp[f.cmd.scope] = _tighten(exp[f.cmd.scope], values_at(f, t, "export_max_kw"))

    fallback_mask = np.ones(t.shape, dtype=bool) if link_lost else ~covered
    if default is not None:
        d = InForce.of(default)
        d_inside, _ = coverage(d, t)
        mask = fallback_mask & d_inside
        imp[default.scope] = _tighten(imp[default.scope], values_at(d, t, "import_max_kw"), mask)
        exp[default.scope] = _tighten(exp[default.scope], values_at(d, t, "export_max_kw"), mask)
        if t.size and mask[0]:
            active.append(default.command_id)
    elif link_lost and fallback_limit_kw is not None:
        imp["site"] = np.minimum(imp["site"], fallback_limit_kw)

    winner, ranked = winning_setpoints(in_force, t)
    setpoint = np.full(t.shape, np.nan)
    scope = "ev"
    if (winner >= 0).any():
        scope = ranked[int(winner[np.argmax(winner >= 0)])].cmd.scope
        for k, f in enumerate(ranked):
            if f.cmd.scope == scope:
                setpoint = np.where(winner == k, values_at(f, t, "setpoint_kw"), setpoint)
    return DispatchLimits(
        site_import_max_kw=imp["site"],
        site_export_max_kw=exp["site"],
        ev_import_max_kw=imp["ev"],
        ev_export_max_kw=exp["ev"],
        setpoint_kw=setpoint,
        setpoint_scope=scope,
        active_command_ids=tuple(active),
    )
