"""What to believe about the household load while the transformer meter cannot be read.

ok ──(read fails)──► held: the last household load plus a margin, for `grace_s`
held ──(grace over)──► safe: the highest household load of the last `history_s` plus the margin,
                       so the piles share what the transformer limit leaves above that peak
held/safe ──(meter answers)──► ok
With no history at all (a meter lost since start) the state is `unknown`: no headroom, piles off.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

BIN_S = 10.0  # the history keeps the peak of every 10 s


@dataclass(frozen=True)
class Assumed:
    base_kw: float
    base_phase_kw: np.ndarray  # (3,)
    state: str  # held | safe | unknown


class MeterGuard:
    def __init__(self, grace_s: float, margin_kw: float, history_s: float = 3600.0) -> None:
        self.grace_s = grace_s
        self.margin_kw = margin_kw
        self.history_s = history_s
        self.state = "ok"
        self.last_ok_s: float | None = None
        self.lost_s: float | None = None
        self.last_base_kw = 0.0
        self.last_phase_kw = np.zeros(3)
        self._bins: deque[tuple[float, float, np.ndarray]] = deque()  # (bin start, peak total, peak per phase)
        self._peak: tuple[float, np.ndarray] | None = None

    # ---- while the meter answers -------------------------------------------------------
    def observe(self, t_s: float, base_kw: float, base_phase_kw: np.ndarray | None) -> str | None:
        """A good reading; returns "restored" when the meter was lost before."""
        phase = np.full(3, base_kw / 3.0) if base_phase_kw is None else np.asarray(base_phase_kw, dtype=float)
        self.last_ok_s, self.last_base_kw, self.last_phase_kw = t_s, base_kw, phase
        start = math.floor(t_s / BIN_S) * BIN_S
        if self._bins and self._bins[-1][0] == start:
            _, tot, ph = self._bins[-1]
            self._bins[-1] = (start, max(tot, base_kw), np.maximum(ph, phase))
        else:
            self._bins.append((start, base_kw, phase.copy()))
        while self._bins and (self._bins[0][0] < t_s - self.history_s or self._bins[0][0] > t_s):
            self._bins.popleft()  # too old, or from before a backward clock step
        was = self.state
        self.state, self.lost_s, self._peak = "ok", None, None
        return "restored" if was != "ok" else None

    def seed(self, t_s: np.ndarray, base_kw: np.ndarray, base_phase_kw: np.ndarray) -> None:
        """Recent household load read back from storage after a restart (time order)."""
        for i in range(len(t_s)):
            self.observe(float(t_s[i]), float(base_kw[i]), base_phase_kw[i])
        self.last_ok_s = None  # a reading from before the restart is history, not a value to hold

    # ---- while it does not -------------------------------------------------------------
    def assumed(self, t_s: float) -> tuple[Assumed, str | None]:
        """What to assume now, and the state entered this tick (held, safe, unknown) if it changed."""
        if self.lost_s is None:
            self.lost_s = t_s
        if self.last_ok_s is not None and t_s - self.last_ok_s <= self.grace_s:
            new = "held"
            a = Assumed(self.last_base_kw + self.margin_kw, self.last_phase_kw + self.margin_kw / 3.0, new)
        else:
            peak = self.peak()
            if peak is None:
                new = "unknown"
                a = Assumed(math.inf, np.full(3, math.inf), new)
            else:
                new = "safe"
                a = Assumed(peak[0] + self.margin_kw, peak[1] + self.margin_kw / 3.0, new)
        changed = new if new != self.state else None
        self.state = new
        return a, changed

    def peak(self) -> tuple[float, np.ndarray] | None:
        """The highest recent household load (total, per phase), computed once per outage."""
        if self._peak is None and self._bins:
            self._peak = (max(b[1] for b in self._bins), np.max(np.stack([b[2] for b in self._bins]), axis=0))
        return self._peak

    def shift_time(self, step_s: float) -> None:
        """The wall clock was stepped: keep the grace time and the history window in real time."""
        if self.last_ok_s is not None:
            self.last_ok_s += step_s
        if self.lost_s is not None:
            self.lost_s += step_s
        self._bins = deque((b[0] + step_s, b[1], b[2]) for b in self._bins)
