"""What a planner keeps between ticks to warm-start GLOP: the last basis and session numbers.

Consecutive plans differ a little (energy delivered in the last minute, a new forecast, a
car arriving or leaving, the horizon moving on by a step), so the last optimal basis is
nearly optimal again (see `youxu.scheduler.lp_basis` for how it is carried over). A cold GLOP
solve of 500 piles x 96 steps takes ~7000 simplex iterations; from the last basis, tens.

The caller keeps one `WarmStart` per site and passes it to every plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from youxu.scheduler.lp_basis import SavedBasis

MAX_UID = (1 << 24) - 1  # session numbers fit the 24 bits lp_build gives them in a key


class WarmStart:
    """The last basis (by element key) and a stable number for every session id."""

    def __init__(self) -> None:
        self.saved: SavedBasis | None = None
        self.saved_optimal = False  # the saved basis is an optimum (not where a timed-out solve stopped)
        self.solves = 0
        self.warm_solves = 0
        self.last_iterations = 0
        self.last_changed = 0  # elements the last basis did not know, and rows that lost a basic column
        self._uids: dict[str, int] = {}
        self._next_uid = 1

    def uids(self, ids: Sequence[str | None]) -> np.ndarray:
        """A stable small integer per session id; ids not seen in the last call are forgotten."""
        if self._next_uid + len(ids) > MAX_UID:  # numbers run out after years: start afresh
            self._uids.clear()
            self._next_uid = 1
            self.forget()
        out = np.empty(len(ids), dtype=np.int64)
        now: dict[str, int] = {}
        for i, sid in enumerate(ids):
            key = "" if sid is None else sid
            uid = self._uids.get(key)
            if uid is None:
                uid = self._next_uid
                self._next_uid += 1
            now[key] = uid
            out[i] = uid
        self._uids = now
        return out

    def forget(self) -> None:
        self.saved = None
        self.saved_optimal = False
