"""Readings averaged into fixed buckets (1 min, 15 min) as they arrive: O(1) per reading.

A bucket is closed (and its row returned) by the first reading of a later bucket. A reading
older than the open bucket (the wall clock was stepped back) closes it too and starts afresh,
so no row ever mixes times from before and after a clock step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from youxu.controller.store.schema import READING_COLUMNS


class Bucket:
    def __init__(self, width_s: float) -> None:
        self.width_s = float(width_s)
        self.start_s: float | None = None
        self._sum = [0.0] * len(READING_COLUMNS)
        self._cnt = [0] * len(READING_COLUMNS)
        self.samples = 0
        self.total_max_kw = -math.inf
        self.base_max_kw = -math.inf
        self.limit_min_kw = math.inf

    def _start_of(self, t_s: float) -> float:
        return math.floor(t_s / self.width_s) * self.width_s

    def add(self, t_s: float, values: Sequence[float | None], limit_kw: float | None) -> dict | None:
        """Fold one reading (values in READING_COLUMNS order) in; return a closed bucket's row, if any."""
        start = self._start_of(t_s)
        closed = None
        if self.start_s is not None and start != self.start_s:
            closed = self.close()
        if self.start_s is None:
            self.start_s = start
        self.samples += 1
        for i, v in enumerate(values):
            if v is not None and math.isfinite(v):
                self._sum[i] += v
                self._cnt[i] += 1
        total, base = values[0], values[1]
        if total is not None and math.isfinite(total):
            self.total_max_kw = max(self.total_max_kw, total)
        if base is not None and math.isfinite(base):
            self.base_max_kw = max(self.base_max_kw, base)
        if limit_kw is not None and math.isfinite(limit_kw):
            self.limit_min_kw = min(self.limit_min_kw, limit_kw)
        return closed

    def close(self) -> dict | None:
        """The open bucket as a row (None if empty); the bucket is empty afterwards."""
        if self.start_s is None or self.samples == 0:
            self.start_s = None
            return None

        def fin(x: float) -> float | None:
            return x if math.isfinite(x) else None

        row: dict = {"t_s": self.start_s, "width_s": self.width_s, "samples": self.samples,
                     "total_max_kw": fin(self.total_max_kw), "base_max_kw": fin(self.base_max_kw),
                     "limit_min_kw": fin(self.limit_min_kw)}
        for i, name in enumerate(READING_COLUMNS):
            row[name] = self._sum[i] / self._cnt[i] if self._cnt[i] else None
        self.__init__(self.width_s)  # type: ignore[misc]
        return row
