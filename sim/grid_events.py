"""The grid's dispatch commands in a scenario: `youxu.dispatch/1` objects with arrival times.

Three kinds of event, each on configurable scenario days (day d = the 24 h from start + d days;
an event at local hour h falls on the first h:00 at or after the start of that day):
- evening peak shaving: a `limit` on the site total (households included);
- valley filling: a `setpoint` asking the EV aggregate to draw power in the night valley;
- a V2G request: a `setpoint` with a negative value (discharge) during the evening peak.
Values are chosen from the base load the distribution company forecasts, so that households
alone always fit under a limit. Command ids are UUIDs drawn from the seeded generator.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from youxu.sim.tou import DAY_S, LocalAxis


@dataclass(frozen=True)
class PeakLimit:
    from_h: float = 19.0
    hours: int = 2
    fraction_of_limit: tuple[float, ...] = (0.85, 0.88)  # per hour of the event
    base_headroom_kw: float = 0.1  # the limit keeps at least this share of the hour's base peak free for EVs
    lead_s: int = 1800  # issued this long before it starts


@dataclass(frozen=True)
class ValleyFill:
    from_h: float = 1.0
    hours: int = 4
    share_of_headroom: float = 0.35  # of the free capacity under the site limit
    share_of_piles: float = 0.3  # at most this share of all piles' power
    lead_s: int = 6 * 3600


@dataclass(frozen=True)
class V2gRequest:
    from_h: float = 19.0
    hours: int = 1
    share_of_v2g_piles: float = 0.4  # of the V2G piles' discharge power
    lead_s: int = 3600


@dataclass(frozen=True)
class GridEventParams:
    issuer: str = "bj-dms"
    first_seq: int = 1
    peak_days: tuple[int, ...] = (0,)
    valley_days: tuple[int, ...] = (0,)
    v2g_days: tuple[int, ...] = (0,)
    peak: PeakLimit = field(default_factory=PeakLimit)
    valley: ValleyFill = field(default_factory=ValleyFill)
    v2g: V2gRequest = field(default_factory=V2gRequest)


def _event_offset_s(axis: LocalAxis, day: int, local_h: float) -> int:
    """Seconds from start of the first local `local_h` o'clock at or after the start of scenario day `day`."""
    day_start = day * DAY_S
    tod_s = (axis.first_midnight_offset_s + day_start) % DAY_S
    target_s = round(local_h * 3600) % DAY_S
    return day_start + (target_s - tod_s) % DAY_S


def _window(base_kw: np.ndarray, resolution_s: int, a_s: int, b_s: int) -> np.ndarray:
    return base_kw[a_s // resolution_s: max(a_s // resolution_s + 1, b_s // resolution_s)]


def dispatch_entries(
    axis: LocalAxis,
    base_kw: np.ndarray,
    limit_kw: float,
    pile_max_kw: float,
    v2g_discharge_kw: float,
    params: GridEventParams,
    rng: np.random.Generator,
) -> list[dict]:
    """The scenario's `dispatch` list, ordered by arrival, with increasing `seq`.

    `base_kw` is the household load on `axis` (one value per `axis.resolution_s`).
    """
    planned: list[tuple[int, int, str, dict]] = []  # (valid_from_s, issued_s, kind, fields)
    res = axis.resolution_s
    for day in params.peak_days:
        pk = params.peak
        t0 = _event_offset_s(axis, day, pk.from_h)
        periods = []
        for h in range(pk.hours):
            seg = _window(base_kw, res, t0 + h * 3600, t0 + (h + 1) * 3600)
            if seg.size == 0:
                break
            frac = pk.fraction_of_limit[min(h, len(pk.fraction_of_limit) - 1)]
            floor = float(seg.max()) * (1.0 + pk.base_headroom_kw)
            cap_kw = min(limit_kw, max(frac * limit_kw, floor))
            periods.append({"offset_s": h * 3600, "import_max_kw": round(cap_kw, 1)})
        if periods:
            planned.append((t0, t0 - pk.lead_s, "limit", {
                "type": "limit", "scope": "site", "priority": 1, "periods": periods,
                "_until_s": t0 + len(periods) * 3600,
            }))
    for day in params.valley_days:
        vf = params.valley
        t0 = _event_offset_s(axis, day, vf.from_h)
        seg = _window(base_kw, res, t0, t0 + vf.hours * 3600)
        if seg.size == 0:
            continue
        kw = min(vf.share_of_headroom * (limit_kw - float(seg.max())), vf.share_of_piles * pile_max_kw)
        if kw <= 1.0:
            continue
        planned.append((t0, t0 - vf.lead_s, "setpoint", {
            "type": "setpoint", "scope": "ev", "priority": 2,
            "periods": [{"offset_s": 0, "setpoint_kw": round(kw, 1)}], "_until_s": t0 + vf.hours * 3600,
        }))
    if v2g_discharge_kw > 0:
        for day in params.v2g_days:
            vq = params.v2g
            t0 = _event_offset_s(axis, day, vq.from_h)
            kw = round(vq.share_of_v2g_piles * v2g_discharge_kw, 1)
            if kw <= 0:
                continue
            planned.append((t0, t0 - vq.lead_s, "setpoint", {
                "type": "setpoint", "scope": "ev", "priority": 1,
                "periods": [{"offset_s": 0, "setpoint_kw": -kw}], "_until_s": t0 + vq.hours * 3600,
            }))
    planned = [p for p in planned if p[0] < axis.duration_s]
    planned.sort(key=lambda p: (max(p[1], 0), p[0], p[2]))
    out = []
    for i, (t0, issued_s, _, fields) in enumerate(planned):
        at_s = max(issued_s, 0)
        until_s = min(fields.pop("_until_s"), axis.duration_s)
        cmd = {
            "schema": "youxu.dispatch/1",
            "command_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "issuer": params.issuer,
            "seq": params.first_seq + i,
            "issued_at": axis.at(at_s).isoformat(),
            **{k: v for k, v in fields.items() if k in ("type", "scope", "priority")},
            "valid_from": axis.at(t0).isoformat(),
            "valid_until": axis.at(until_s).isoformat(),
            "periods": [p for p in fields["periods"] if p["offset_s"] < until_s - t0],
            "response_required": True,
        }
        out.append({"at_s": int(at_s), "command": cmd})
    return out
