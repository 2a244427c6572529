"""Values as the database takes them: session rows, plain JSON, and which errors mean "try later"."""

from __future__ import annotations

import json
import math

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from youxu.controller.storelink import SessionRecord


def session_row(s: SessionRecord, t_s: float, ended: bool) -> dict:
    return {"id": s.id, "pile_id": s.pile_id, "arrival_s": s.arrival_s, "departure_s": s.departure_s,
            "ended_s": t_s if ended else None, "energy_requested_kwh": s.energy_requested_kwh,
            "energy_delivered_kwh": s.delivered_kwh, "v2g": int(s.v2g), "urgent": int(s.urgent),
            "booked": int(s.booked), "state": "closed" if ended else s.state, "updated_s": t_s}


def plain_json(value: object) -> object:
    """JSON any database takes: NaN and infinities become null, other objects their str()."""

    def clean(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return clean(json.loads(json.dumps(value, default=str)))


# SQLite result codes that speak of the database file or its volume, never of the row: busy, locked,
# read-only, I/O error, corrupt (what a dying card's failed reads look like), full, cannot open,
# protocol, not a database
SQLITE_OUTAGE_CODES = frozenset({5, 6, 8, 10, 11, 13, 14, 15, 26})


def is_outage(exc: Exception) -> bool:
    """A database that cannot be reached or written (retry later), not a row it refuses."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in SQLITE_OUTAGE_CODES:
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None
