"""The site's events read back: the latest from memory, older ones from the events table.

`Store.event` puts every event (the loop's alarms and the grid link's own) into a short ring as
well as the database queue, so a reader sees an event at once, even while the database is away;
what has left the ring is read from the table (by whoever asks, never the loop).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from youxu.controller.store.schema import events

log = logging.getLogger(__name__)

RING_SIZE = 500


@dataclass(frozen=True)
class EventRow:
    t_s: float
    kind: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


class RecentEvents:
    def __init__(self, size: int = RING_SIZE) -> None:
        self._ring: deque[EventRow] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.evicted = False  # some events have left the ring (older ones only in the table)

    def add(self, row: EventRow) -> None:
        with self._lock:
            if len(self._ring) == self._ring.maxlen:
                self.evicted = True
            self._ring.append(row)

    def since(self, since_s: float, engine: Engine | None = None, limit: int = 1000) -> list[EventRow]:
        """Events at or after `since_s`, oldest first, at most `limit` (the newest of them)."""
        with self._lock:
            ring = list(self._ring)
            evicted = self.evicted
        oldest = ring[0].t_s if ring else None
        older: list[EventRow] = []
        if engine is not None and (evicted or not ring) and (oldest is None or since_s < oldest):
            older = _from_table(engine, since_s, oldest, limit)
        rows = older + [r for r in ring if r.t_s >= since_s]
        return rows[-limit:]


def _from_table(engine: Engine, since_s: float, before_s: float | None, limit: int) -> list[EventRow]:
    q = select(events.c.t_s, events.c.kind, events.c.message, events.c.fields).where(events.c.t_s >= since_s)
    if before_s is not None:
        q = q.where(events.c.t_s < before_s)
    try:
        with engine.connect() as c:
            rows = list(c.execute(q.order_by(events.c.t_s.desc(), events.c.id.desc()).limit(limit)))
    except SQLAlchemyError as exc:
        log.warning("cannot read the events table: %s", exc)
        return []
    return [EventRow(float(t), k, m or "", f or {}) for t, k, m, f in reversed(rows)]
