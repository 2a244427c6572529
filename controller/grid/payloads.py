"""What the site publishes to the grid: telemetry, status, pile state and event payloads.

Pure builders from a `TickReport` (and the site's time zone); JSON-ready dicts with the exact
keys of contract section 4 (plus compatible extensions: `stale`, `piles.unreachable`). Non-finite
numbers become null, and so do values the tick did not measure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from youxu.controller.grid.dispatch_schema import format_rfc3339
from youxu.controller.gridlink import TickReport

TELEMETRY_SCHEMA = "youxu.telemetry/1"
EVENT_SCHEMA = "youxu.event/1"
PILE_STATE_SCHEMA = "youxu.pile/1"
PILE_POWER_CHANGE_KW = 0.5  # pile state is republished when power moves by at least this


def kw(x: float | None, digits: int = 3) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def to_json(obj: dict[str, Any]) -> bytes:
    """UTF-8 JSON; text UTF-8 cannot encode (a lone surrogate from somewhere) is escaped instead of
    failing the message."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False).encode()
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, default=str, allow_nan=False).encode()


def pile_counts(r: TickReport) -> dict[str, int]:
    """Piles by state; one that did not answer this tick is counted faulted (and unreachable), never
    by the state it last reported."""
    unreachable = set(r.unreachable_piles)
    statuses = [s for pid, s in r.pile_status.items() if pid not in unreachable]
    charging = sum(s == "charging" for s in statuses)
    fault = sum(s == "fault" for s in statuses)
    return {"charging": charging, "idle": len(statuses) - charging - fault, "faulted": fault + len(unreachable),
            "unreachable": len(unreachable)}


def stale_fields(r: TickReport) -> list[str]:
    """The telemetry values this tick did not measure: the meter's without a meter reading, the EV
    sum (and the household load, which is the meter less it) with a pile unread."""
    out = [] if r.meter_ok else ["total_kw", "base_kw", "phase_kw"]
    if r.unreachable_piles:
        out += [f for f in ("base_kw", "ev_kw") if f not in out]
    return out


def telemetry_payload(r: TickReport, active_command_ids: Sequence[str], tz: tzinfo) -> dict[str, Any]:
    """`youxu.telemetry/1`; a value not measured this tick is null and named in `stale` (an extension:
    an assumed value is never passed off as a measurement)."""
    stale = stale_fields(r)
    ph = None if "phase_kw" in stale else r.phase_kw
    out: dict[str, Any] = {
        "schema": TELEMETRY_SCHEMA,
        "at": format_rfc3339(r.t_s, tz),
        "total_kw": None if "total_kw" in stale else kw(r.total_kw),
        "base_kw": None if "base_kw" in stale else kw(r.base_kw),
        "ev_kw": None if "ev_kw" in stale else kw(r.ev_kw),
        "phase_kw": {"L1": kw(ph[0]) if ph else None, "L2": kw(ph[1]) if ph else None,
                     "L3": kw(ph[2]) if ph else None},
        "limit_kw": kw(r.limit_kw),
        "active_commands": list(active_command_ids),
        "piles": pile_counts(r),
        "stale": stale,
    }
    if r.thermal is not None:
        out["thermal"] = dict(r.thermal)
    return out


def status_payload(state: str, t_s: float, tz: tzinfo, version: str) -> dict[str, Any]:
    return {"state": state, "at": format_rfc3339(t_s, tz), "version": version}


def event_payload(kind: str, message: str, t_s: float, tz: tzinfo, fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": EVENT_SCHEMA, "at": format_rfc3339(t_s, tz), "kind": kind, "message": message}
    for k, v in fields.items():
        if k not in out:
            out[k] = kw(v) if isinstance(v, float) else v
    return out


def pile_state_payload(pile_id: str, r: TickReport, tz: tzinfo) -> dict[str, Any]:
    """A pile's state; one that did not answer this tick is `unknown`, its power null and `stale`."""
    if pile_id in r.unreachable_piles:
        return {"schema": PILE_STATE_SCHEMA, "pile_id": pile_id, "at": format_rfc3339(r.t_s, tz), "status": "unknown",
                "power_kw": None, "energy_kwh": kw(r.pile_energy_kwh.get(pile_id)),
                "session": r.pile_session.get(pile_id), "setpoint_kw": kw(r.setpoints_kw.get(pile_id)),
                "stale": True}
    return {
        "schema": PILE_STATE_SCHEMA,
        "pile_id": pile_id,
        "at": format_rfc3339(r.t_s, tz),
        "status": r.pile_status.get(pile_id, "unknown"),
        "power_kw": kw(r.pile_power_kw.get(pile_id)),
        "energy_kwh": kw(r.pile_energy_kwh.get(pile_id)),
        "session": r.pile_session.get(pile_id),
        "setpoint_kw": kw(r.setpoints_kw.get(pile_id)),
        "stale": False,
    }


def pile_state_changed(prev: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Status, session or setpoint changed, or power moved by PILE_POWER_CHANGE_KW or more."""
    if prev is None:
        return True
    for key in ("status", "session", "setpoint_kw"):
        if prev.get(key) != new.get(key):
            return True
    a, b = prev.get("power_kw"), new.get("power_kw")
    if (a is None) != (b is None):
        return True
    return a is not None and b is not None and abs(a - b) >= PILE_POWER_CHANGE_KW
