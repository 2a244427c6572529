"""When the fast loop ticks: on a steady (monotonic) time base, reconciled with the wall clock.

Ticks are due every `period_s` of steady time, so an NTP step of the wall clock neither
stalls the loop (a backward step) nor makes it run ticks back to back (a forward step): there
is exactly one tick per period. A tick that overruns skips the periods it used up; they are
counted, never run late in a burst. Each slot compares how far the wall clock and the steady
clock moved since the last one; a difference beyond the tolerance is reported as a clock step,
so the loop can move its own timestamps (session integration, grace times) with it.

The steady base is the clock's `monotonic()` when it has one, the OS monotonic clock for the
real clock, and the clock itself for simulated clocks (which never step).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from youxu.drivers.clock import Clock, RealClock


@dataclass(frozen=True)
class Slot:
    wall_s: float  # the clock's time at the start of the tick
    steady_s: float
    step_s: float  # wall-clock step detected since the last slot (0 if none)


def steady_source(clock: Clock) -> tuple[Callable[[], float], bool]:
    """(steady time function, whether waits use real time) for a clock."""
    mono = getattr(clock, "monotonic", None)
    if callable(mono):
        return mono, True
    if isinstance(clock, RealClock):
        return time.monotonic, True
    return clock.now, False


class Ticker:
    def __init__(self, clock: Clock, period_s: float, step_tolerance_s: float | None = None) -> None:
        self.clock = clock
        self.period_s = period_s
        self.steady, self._real_waits = steady_source(clock)
        self.step_tolerance_s = step_tolerance_s if step_tolerance_s is not None else max(1.0, period_s / 2)
        self.next_steady_s: float | None = None
        self.skipped = 0  # periods lost to overruns
        self.steps = 0  # wall-clock steps seen
        self._last: tuple[float, float] | None = None  # (wall, steady) at the last slot

    async def _sleep_until(self, steady_s: float, stop: asyncio.Event) -> None:
        if self._real_waits:
            delay = steady_s - self.steady()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        else:
            await self.clock.sleep_until(steady_s)

    async def next(self, stop: asyncio.Event) -> Slot | None:
        """Wait for the next slot; None when `stop` was set meanwhile."""
        if self.next_steady_s is None:
            self.next_steady_s = self.steady()
        await self._sleep_until(self.next_steady_s, stop)
        if stop.is_set():
            return None
        wall, steady = self.clock.now(), self.steady()
        step = 0.0
        if self._last is not None:
            drift = (wall - self._last[0]) - (steady - self._last[1])
            if abs(drift) > self.step_tolerance_s:
                step = drift
                self.steps += 1
        self._last = (wall, steady)
        return Slot(wall, steady, step)

    def done(self) -> int:
        """The tick of the current slot has finished: schedule the next one; returns periods skipped."""
        assert self.next_steady_s is not None
        self.next_steady_s += self.period_s
        now = self.steady()
        skipped = 0
        if now > self.next_steady_s:  # overran: skip the periods used up, never run ticks back to back
            skipped = int((now - self.next_steady_s) // self.period_s) + 1
            self.next_steady_s += skipped * self.period_s
        self.skipped += skipped
        return skipped
