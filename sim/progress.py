"""A one-line progress bar on stderr for long runs (silent when asked, or when not a terminal)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, quiet: bool = False, width: int = 30) -> None:
        self.label, self.quiet, self.width = label, quiet, width
        self.t0 = time.perf_counter()
        self._last_pct = -1

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or total <= 0:
            return
        pct = int(100 * done / total)
        if pct == self._last_pct:
            return
        self._last_pct = pct
        fill = self.width * done // total
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (total - done) if done else 0.0
        sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {pct:3d}%  "
                         f"{elapsed:6.1f} s elapsed, {eta:6.1f} s left")
        if done >= total:
            sys.stderr.write("\n")
            self._last_pct = -1
        sys.stderr.flush()

    def note(self, text: str) -> None:
        """A line of its own on stderr (after a bar in progress), unless quiet."""
        if self.quiet:
            return
        sys.stderr.write(("\n" if 0 <= self._last_pct < 100 else "") + text + "\n")
        self._last_pct = -1
        sys.stderr.flush()
