"""The fast loop's counters: totals for the process, and one row per minute for storage."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW_S = 60.0


@dataclass
class LoopStats:
    ticks: int = 0
    deadline_misses: int = 0
    consecutive_overruns: int = 0
    skipped_periods: int = 0
    clock_steps: int = 0
    decide_errors: int = 0
    tick_errors: int = 0
    tick_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))
    plan_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))
    fallbacks: int = 0
    phase_ms: dict = field(default_factory=lambda: {"read": deque(maxlen=10_000), "decide": deque(maxlen=10_000),
                                                    "write": deque(maxlen=10_000)})

    def account(self, tick_ms: float, budget_ms: float, plan_ms: float | None, fallback: bool) -> bool:
        """Count one tick; True when it overran its budget."""
        self.ticks += 1
        self.tick_ms.append(tick_ms)
        if plan_ms is not None:
            self.plan_ms.append(plan_ms)
            self.fallbacks += int(fallback)
        over = tick_ms > budget_ms
        if over:
            self.deadline_misses += 1
            self.consecutive_overruns += 1
        else:
            self.consecutive_overruns = 0
        return over


@dataclass
class StatsWindow:
    """What a minute of ticks looked like (a `loop_stats` row)."""

    start_s: float | None = None
    tick_ms: list = field(default_factory=list)
    misses: int = 0
    plan_ms_max: float = 0.0
    fallbacks: int = 0
    safe_ticks: int = 0

    def add(self, t_s: float, tick_ms: float, over: bool, plan_ms: float | None, fallback: bool,
            safe: bool) -> None:
        if self.start_s is None:
            self.start_s = t_s
        self.tick_ms.append(tick_ms)
        self.misses += int(over)
        if plan_ms is not None:
            self.plan_ms_max = max(self.plan_ms_max, plan_ms)
        self.fallbacks += int(fallback)
        self.safe_ticks += int(safe)

    def due(self, t_s: float) -> bool:
        return self.start_s is not None and not (0.0 <= t_s - self.start_s < WINDOW_S)

    def row(self, rows_dropped: int, queue_depth: int) -> dict:
        a = np.asarray(self.tick_ms) if self.tick_ms else np.zeros(1)
        out = {"t_s": self.start_s, "width_s": WINDOW_S, "ticks": len(self.tick_ms), "deadline_misses": self.misses,
               "tick_ms_p50": float(np.percentile(a, 50)), "tick_ms_p99": float(np.percentile(a, 99)),
               "tick_ms_max": float(a.max()), "plan_ms_max": self.plan_ms_max, "fallbacks": self.fallbacks,
               "safe_mode": self.safe_ticks, "rows_dropped": rows_dropped, "queue_depth": queue_depth}
        self.__init__()  # type: ignore[misc]
        return out
