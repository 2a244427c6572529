"""Clocks: the only source of time. Real for a site, scaled or virtual for simulations.

`now()` is epoch seconds (UTC). `sleep_until(t)` waits until the clock reads t. Tick
durations and budgets are always measured in real time (`time.perf_counter`), since that
is what the hardware and the deadline see.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, t_s: float) -> None: ...

    @property
    def speed(self) -> float: ...


class RealClock:
    """Wall-clock time, as on a gateway. Sleeps track the wall clock, so an NTP step never
    makes a sleep last for hours (a backwards step just shortens the wait to the period)."""

    speed = 1.0

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t_s: float) -> None:
        while True:
            remaining = t_s - time.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 1.0))


class ScaledClock:
    """Simulated time running `speed` times faster than real time from `start_s`."""

    def __init__(self, start_s: float, speed: float = 1.0, origin_monotonic: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start_s = start_s
        self.speed = speed
        self.origin = time.monotonic() if origin_monotonic is None else origin_monotonic

    def now(self) -> float:
        return self.start_s + (time.monotonic() - self.origin) * self.speed

    async def sleep_until(self, t_s: float) -> None:
        delay = (t_s - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """Simulated time that stands still while work is done and jumps when the one
    scheduling task sleeps: a day runs as fast as the work allows, deterministically."""

    speed = float("inf")

    def __init__(self, start_s: float) -> None:
        self._t = float(start_s)

    def now(self) -> float:
        return self._t

    def set(self, t_s: float) -> None:
        self._t = max(self._t, float(t_s))

    async def sleep_until(self, t_s: float) -> None:
        self.set(t_s)
        await asyncio.sleep(0)
