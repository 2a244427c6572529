"""What the local API and the status page show: the latest state the fast loop published.

`LiveState.on_tick` is a loop listener: after every tick it swaps in one frozen `Published` picture
(the tick's report, copies of the open sessions, the overrides and pending bookings) and appends a
point to a short load history. That is all the loop pays; the API's thread formats the JSON from
the picture it finds, so no request ever waits for the loop and the loop never waits for a request.
Waiters (the page's live stream) are woken at most once per tick.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from youxu.controller.grid.dispatch_schema import format_rfc3339
from youxu.controller.grid.payloads import kw, telemetry_payload
from youxu.controller.gridlink import Booking, GridLink, Override, TickReport
from youxu.controller.loop.sessions import Session
from youxu.controller.siteconfig import SiteConfig

if TYPE_CHECKING:
    from youxu.controller.loop.fastloop import FastLoop

HISTORY_POINTS = 1440  # load points kept for the page's chart (one per tick)
AHEAD_S = 4 * 3600.0  # how far the page shows the limits ahead
AHEAD_STEP_S = 300.0


def version() -> str:
    try:
        return metadata.version("youxu")
    except metadata.PackageNotFoundError:
        return "dev"


@dataclass(frozen=True)
class Published:
    """One tick's picture, never changed after it is published."""

    seq: int  # 1 for the first tick, +1 per tick
    report: TickReport
    sessions: tuple[Session, ...]
    pending: tuple[Booking, ...]
    overrides: tuple[Override, ...]
    meter_ok: bool
    ticks: int
    deadline_misses: int


class LiveState:
    def __init__(self, cfg: SiteConfig, link: GridLink, commands: Callable[[], list[dict[str, Any]]] | None = None
                 ) -> None:
        self.cfg = cfg
        self.tz: tzinfo = cfg.tz
        self.link = link
        self.commands_fn = commands or (lambda: [])
        self.version = version()
        self.latest: Published | None = None
        self.history: deque[tuple[float, float, float, float, float]] = deque(maxlen=HISTORY_POINTS)
        self._waiters: list[Callable[[], None]] = []
        self._lock = threading.Lock()  # guards the waiter list only

    def attach(self, loop: FastLoop) -> LiveState:
        loop.listeners.append(self.on_tick)
        return self

    # ---- the loop's side (cheap) ------------------------------------------------------------
    def on_tick(self, report: TickReport, loop: FastLoop) -> None:
        tr = loop.tracker
        prev = self.latest
        self.latest = Published(
            seq=(prev.seq + 1) if prev is not None else 1, report=report,
            sessions=tuple(copy.copy(s) for s in tr.sessions.values()), pending=tuple(tr.pending.values()),
            overrides=tuple(tr.overrides.values()), meter_ok=loop.meter_guard.state == "ok",
            ticks=loop.stats.ticks, deadline_misses=loop.stats.deadline_misses,
        )
        self.history.append((report.t_s, report.base_kw, report.ev_kw, report.total_kw, report.limit_kw))
        with self._lock:
            waiters = list(self._waiters)
        for wake in waiters:
            wake()

    def add_waiter(self, wake: Callable[[], None]) -> None:
        """`wake` is called (in the loop's thread) after every tick: it must only hand over, never work."""
        with self._lock:
            self._waiters.append(wake)

    def remove_waiter(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if wake in self._waiters:
                self._waiters.remove(wake)

    # ---- views (any thread) -------------------------------------------------------------------
    def t(self, t_s: float | None) -> str | None:
        return None if t_s is None or not math.isfinite(t_s) else format_rfc3339(t_s, self.tz)

    def status(self, p: Published | None = None) -> dict[str, Any] | None:
        """The latest telemetry object (contract section 4) plus `state` and `version`, and for the page
        the transformer's own limits and the limits ahead."""
        p = p or self.latest
        if p is None:
            return None
        r = p.report
        limits = self.link.limits(np.array([r.t_s]))
        out = telemetry_payload(r, limits.active_command_ids, self.tz)
        out["state"] = "safe_mode" if r.safe_mode else "online"
        out["version"] = self.version
        t = self.cfg.transformer
        out["site_id"] = self.cfg.site.id
        out["transformer"] = {"rated_kva": t.rated_kva, "import_limit_kw": t.import_limit_kw,
                              "phase_limit_kw": dict(t.phase_limit_kw) if t.phase_limit_kw else None}
        out["meter_ok"] = p.meter_ok
        out["ticks"] = p.ticks
        out["deadline_misses"] = p.deadline_misses
        out["limits_ahead"] = self.limits_ahead(r.t_s)
        return out

    def limits_ahead(self, t0_s: float) -> list[dict[str, Any]]:
        """The site import limit in force over the next hours (transformer or dispatch, tightest)."""
        t = t0_s + np.arange(0.0, AHEAD_S + 1.0, AHEAD_STEP_S)
        d = self.link.limits(t)
        lim = np.minimum(self.cfg.transformer.import_limit_kw, d.site_import_max_kw)
        return [{"at": self.t(float(ti)), "limit_kw": kw(float(li)), "dispatch": bool(np.isfinite(di))}
                for ti, li, di in zip(t, lim, d.site_import_max_kw, strict=True)]

    def piles(self, p: Published | None = None) -> list[dict[str, Any]]:
        p = p or self.latest
        r = p.report if p is not None else None
        sessions = {s.pile_id: s for s in p.sessions} if p is not None else {}
        overrides = {o.pile_id: o for o in p.overrides} if p is not None else {}
        out = []
        for pc in self.cfg.piles:
            s = sessions.get(pc.id)
            o = overrides.get(pc.id)
            out.append({
                "pile_id": pc.id, "phase": pc.phase, "max_kw": kw(pc.rated_kw), "v2g": pc.v2g,
                "status": r.pile_status.get(pc.id, "unknown") if r else "unknown",
                "power_kw": kw(r.pile_power_kw.get(pc.id)) if r else None,
                "setpoint_kw": kw(r.setpoints_kw.get(pc.id)) if r else None,
                "session": s.id if s else None,
                "departure": self.t(s.departure_s) if s else None,
                "energy_kwh": kw(s.delivered_kwh) if s else None,
                "energy_wanted_kwh": kw(s.energy_requested_kwh) if s else None,
                "urgent": bool(s.urgent or (o is not None and o.action == "urgent")) if s else False,
                "override": None if o is None else {"action": o.action, "until": self.t(o.until_s)},
            })
        return out

    def sessions(self, p: Published | None = None) -> dict[str, Any]:
        p = p or self.latest
        if p is None:
            return {"sessions": [], "pending": []}
        return {
            "sessions": [{
                "session_id": s.id, "pile_id": s.pile_id, "state": s.state, "arrival": self.t(s.arrival_s),
                "departure": self.t(s.departure_s), "energy_requested_kwh": kw(s.energy_requested_kwh),
                "energy_delivered_kwh": kw(s.delivered_kwh), "v2g": s.v2g, "min_soc": s.min_soc,
                "urgent": s.urgent, "booked": s.booked,
            } for s in p.sessions],
            "pending": [{
                "pile_id": b.pile_id, "departure": self.t(b.departure_s), "energy_kwh": kw(b.energy_kwh),
                "v2g": b.v2g, "priority": b.priority, "received": self.t(b.received_s),
            } for b in p.pending],
        }

    def commands(self) -> list[dict[str, Any]]:
        return self.commands_fn()

    def history_points(self) -> list[list[float | None]]:
        return [[round(t, 3), kw(b, 2), kw(e, 2), kw(tot, 2), kw(lim, 2)] for t, b, e, tot, lim in list(self.history)]
