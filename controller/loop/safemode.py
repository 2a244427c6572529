"""Safe mode after repeated loop overruns, left again when the ticks are healthy.

normal ──(`enter_after` overruns in a row)──► safe ──(`exit_after` healthy ticks in a row)──► normal
In safe mode the loop skips the planner and sets every pile to its safe current (still through
the safety layer), which also takes the planner's time out of the tick.
"""

from __future__ import annotations

from dataclasses import dataclass

ENTER = "safe_mode"
EXIT = "safe_mode_cleared"


@dataclass
class SafeMode:
    enter_after: int = 5
    exit_after: int = 30
    active: bool = False
    overruns: int = 0
    healthy: int = 0
    entered: int = 0

    def observe(self, overran: bool) -> str | None:
        """Account one tick; returns ENTER or EXIT when the mode changes."""
        if overran:
            self.overruns += 1
            self.healthy = 0
        else:
            self.overruns = 0
            self.healthy += 1
        if not self.active and self.overruns >= self.enter_after:
            self.active = True
            self.entered += 1
            return ENTER
        if self.active and self.healthy >= self.exit_after:
            self.active = False
            return EXIT
        return None
