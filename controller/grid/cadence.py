"""When a periodic message is due, on a grid of due times rather than "at least a period since".

The fast loop's ticks jitter around their period, so comparing the time since the last message
with the period (`>=`) skips a tick whenever the previous one came a little late: a 1 s period
on 1 s ticks became regular 2 s gaps. Due times here sit on a grid (`first, first + period,
...`), and a tick counts as on time when it comes within `tolerance_s` (a fraction of the tick)
before its due time. After a gap in ticks the grid goes on from the next due time after the tick
that sends (nothing is sent in a burst to catch up); a step of the clock back by more than a
period starts a new grid.
"""

from __future__ import annotations

import math


class Cadence:
    def __init__(self, period_s: float, tolerance_s: float = 0.0) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.period_s = period_s
        self.tolerance_s = min(max(0.0, tolerance_s), period_s / 2.0)
        self.next_s: float | None = None  # the next due time (epoch s); None before the first

    def due(self, t_s: float) -> bool:
        """Whether a message is due at `t_s`; if so it counts as sent and the next due time moves on."""
        nxt = self.next_s
        if nxt is not None and t_s < nxt - self.tolerance_s:
            if nxt - t_s <= self.period_s + self.tolerance_s:
                return False
            nxt = None  # the clock went back by more than a period: a new grid from here
        if nxt is None:
            self.next_s = t_s + self.period_s
        else:  # the next grid time after this tick (more than one on after a gap: no catching up)
            self.next_s = nxt + self.period_s * max(1, math.floor((t_s - nxt) / self.period_s) + 1)
        return True
