"""Piles that do not follow their setpoint.

A pile measured above what it was last told (plus a tolerance) is, for this tick's decision,
a fixed load at its measured power: the safety layer makes room for it at once, so a pile that
ignores a reduction never keeps the site over its limit for more than a tick. After
`ignore_ticks` such ticks in a row it is flagged (alarm) and stays a fixed load until it has
followed its setpoint for as many ticks again. A pile discharging more than it was told counts
the same way (export side).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORES = "pile_ignores_setpoint"
OBEYS = "pile_obeys_setpoint"


@dataclass
class ComplianceWatch:
    ids: tuple[str, ...]
    tolerance_kw: float = 0.7
    ignore_ticks: int = 10
    bad: np.ndarray = field(init=False)
    good: np.ndarray = field(init=False)
    flagged: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.bad = np.zeros(n, dtype=np.int64)
        self.good = np.zeros(n, dtype=np.int64)
        self.flagged = np.zeros(n, dtype=bool)

    def check(self, measured_kw: np.ndarray, online: np.ndarray,
              told_kw: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str, dict]]]:
        """(piles to treat as fixed at their measured power this tick, alarms as (pile, kind, fields))."""
        known = online & np.isfinite(told_kw)
        over = known & (measured_kw > told_kw + self.tolerance_kw)
        over |= known & (told_kw <= 0) & (measured_kw < told_kw - self.tolerance_kw)
        obeys = known & ~over
        self.bad = np.where(over, self.bad + 1, 0)
        self.good = np.where(obeys, self.good + 1, 0)
        alarms: list[tuple[str, str, dict]] = []
        for i in np.flatnonzero(~self.flagged & (self.bad >= self.ignore_ticks)):
            self.flagged[i] = True
            alarms.append((self.ids[i], IGNORES, {"measured_kw": round(float(measured_kw[i]), 3),
                                                  "setpoint_kw": round(float(told_kw[i]), 3),
                                                  "ticks": int(self.bad[i])}))
        for i in np.flatnonzero(self.flagged & (self.good >= self.ignore_ticks)):
            self.flagged[i] = False
            alarms.append((self.ids[i], OBEYS, {"measured_kw": round(float(measured_kw[i]), 3)}))
        return over | (self.flagged & online), alarms
