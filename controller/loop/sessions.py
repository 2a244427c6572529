"""Charging sessions, one state machine per pile, driven by what the pile reports.

idle --(car connected)--> plugged --(draws power)--> charging --(stops drawing although offered)--> done
any state --(car disconnected)--> idle.  A booking (departure, energy, V2G consent, priority)
applies to the session on its pile, or to the next one that starts within the booking window.
An override (from the local API) holds a pile paused or urgent until it expires or is resumed;
it belongs to the pile, not to a session.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

import numpy as np

from youxu.controller.gridlink import Booking, Override
from youxu.scheduler.model import Sessions

FULL_AFTER_TICKS = 3  # offered >= minimum but drawing nothing for this many ticks: the car is full
DRAW_KW = 0.1
MAX_GAP_S = 120.0  # without an energy counter, power is integrated over gaps up to this (not over a restart)
CAR_LIMIT_KW = 0.5  # drawing this much below the offer means the car, not the pile, sets the power


@dataclass
class Session:
    id: str
    pile_id: str
    arrival_s: float
    departure_s: float
    energy_requested_kwh: float
    energy_start_kwh: float | None  # pile energy counter at plug-in, None without a counter
    delivered_kwh: float = 0.0
    battery_kwh: float = 60.0
    soc_arrival: float = 0.3
    min_soc: float = 0.2
    v2g: bool = False
    urgent: bool = False
    booked: bool = False
    state: str = "plugged"  # plugged | charging | done
    idle_offered_ticks: int = 0
    last_t_s: float = 0.0
    car_max_kw: float = float("inf")  # what the car accepts, learnt when it draws less than offered


@dataclass
class PileObservation:
    status: str  # available | connected | charging | fault | unknown
    power_kw: float
    energy_kwh: float | None
    soc: float | None = None


@dataclass
class SessionTracker:
    pile_ids: tuple[str, ...]
    default_dwell_s: float = 10 * 3600
    default_energy_kwh: float = 20.0
    booking_window_s: float = 1800.0
    sessions: dict[str, Session] = field(default_factory=dict)  # pile id -> open session
    pending: dict[str, Booking] = field(default_factory=dict)  # bookings waiting for a car
    finished: list[Session] = field(default_factory=list)  # closed since the last drain
    overrides: dict[str, Override] = field(default_factory=dict)  # pile id -> pause/urgent in force

    def apply_override(self, o: Override) -> str:
        """Hold a pile paused or urgent until `o.until_s`, or end its override (`resume`); say what happened."""
        if o.pile_id not in self.pile_ids:
            raise ValueError(f"unknown pile {o.pile_id!r}")
        if o.action == "resume":
            return "resumed" if self.overrides.pop(o.pile_id, None) is not None else "nothing to resume"
        if o.action not in ("pause", "urgent"):
            raise ValueError(f"unknown override action {o.action!r}")
        self.overrides[o.pile_id] = o
        return o.action

    def expire_overrides(self, t_s: float) -> list[Override]:
        """The overrides whose time is up (removed)."""
        done = [o for o in self.overrides.values() if o.until_s <= t_s]
        for o in done:
            del self.overrides[o.pile_id]
        return done

    def override_mask(self, action: str) -> np.ndarray:
        """Piles with an override `action` in force, in the site's pile order."""
        return np.array([(o := self.overrides.get(pid)) is not None and o.action == action for pid in self.pile_ids],
                        dtype=bool)

    def apply_booking(self, b: Booking) -> str:
        """Attach a booking to its pile's session or keep it for the next one; say what happened."""
        if b.pile_id not in self.pile_ids:
            raise ValueError(f"unknown pile {b.pile_id!r}")
        s = self.sessions.get(b.pile_id)
        if s is None:
            self.pending[b.pile_id] = b
            return "pending"
        self._book(s, b)
        return "applied"

    @staticmethod
    def _book(s: Session, b: Booking) -> None:
        s.departure_s = b.departure_s
        s.energy_requested_kwh = b.energy_kwh
        s.v2g = b.v2g
        s.min_soc = b.min_soc
        s.urgent = b.priority == "urgent"
        if b.battery_kwh:
            s.battery_kwh = b.battery_kwh
        if b.soc_arrival is not None:
            s.soc_arrival = b.soc_arrival
        if b.car_max_kw is not None:
            s.car_max_kw = b.car_max_kw
        s.booked = True
        if s.state == "done" and s.delivered_kwh < b.energy_kwh:
            s.state, s.idle_offered_ticks = "plugged", 0

    def update(self, t_s: float, obs: dict[str, PileObservation | None], offered_kw: dict[str, float],
               min_kw: dict[str, float]) -> list[tuple[str, str]]:
        """Advance every pile's state machine; return (pile, transition) pairs for events."""
        changes: list[tuple[str, str]] = []
        for pid in self.pile_ids:
            o = obs.get(pid)
            if o is None or o.status in ("unknown",):
                continue  # unreadable this tick: keep the state as it is
            s = self.sessions.get(pid)
            plugged = o.status in ("connected", "charging")
            if s is None and plugged:
                s = self._start(pid, t_s, o)
                changes.append((pid, "session_started"))
            elif s is not None and not plugged and o.status != "fault":
                self.finished.append(s)
                del self.sessions[pid]
                changes.append((pid, "session_ended"))
                continue
            if s is None:
                continue
            self._measure(s, t_s, o)
            drawing = abs(o.power_kw) > DRAW_KW
            offered = offered_kw.get(pid, 0.0) >= min_kw.get(pid, 0.0) > 0
            if drawing and offered_kw.get(pid, 0.0) > o.power_kw + CAR_LIMIT_KW:
                # the car takes less than the pile offers: its on-board charger is the limit
                seen = o.power_kw + CAR_LIMIT_KW / 2
                s.car_max_kw = seen if not np.isfinite(s.car_max_kw) else max(s.car_max_kw, seen)
            if drawing:
                s.state, s.idle_offered_ticks = "charging", 0
            elif offered and s.state != "done":
                s.idle_offered_ticks += 1
                if s.idle_offered_ticks >= FULL_AFTER_TICKS:
                    s.state = "done"
                    changes.append((pid, "car_full"))
        self._expire_pending(t_s)
        return changes

    def _start(self, pid: str, t_s: float, o: PileObservation) -> Session:
        s = Session(
            id=f"{pid}-{int(t_s)}",
            pile_id=pid,
            arrival_s=t_s,
            departure_s=t_s + self.default_dwell_s,
            energy_requested_kwh=self.default_energy_kwh,
            energy_start_kwh=o.energy_kwh,
            soc_arrival=o.soc if o.soc is not None else 0.3,
            last_t_s=t_s,
        )
        b = self.pending.pop(pid, None)
        if b is not None:
            self._book(s, b)
        self.sessions[pid] = s
        return s

    @staticmethod
    def _measure(s: Session, t_s: float, o: PileObservation) -> None:
        if o.energy_kwh is not None and s.energy_start_kwh is not None:
            if o.energy_kwh < s.energy_start_kwh:  # the pile reset its counter for the session
                s.energy_start_kwh = 0.0
            s.delivered_kwh = o.energy_kwh - s.energy_start_kwh
        else:
            gap_s = t_s - s.last_t_s
            if 0.0 < gap_s <= MAX_GAP_S:
                s.delivered_kwh += o.power_kw * gap_s / 3600.0
        s.last_t_s = t_s

    def _expire_pending(self, t_s: float) -> None:
        for pid in [p for p, b in self.pending.items() if t_s - b.received_s > self.booking_window_s]:
            del self.pending[pid]

    def arrays(self) -> Sessions:
        """The planner's view, aligned with the site's pile order."""
        rows = [self.sessions.get(pid) for pid in self.pile_ids]

        def col(fn, default: float) -> np.ndarray:
            return np.array([fn(s) if s is not None else default for s in rows], dtype=float)

        # a paused pile's session is out of the allocation; an urgent override makes its session urgent
        active = np.array([s is not None for s in rows], dtype=bool) & ~self.override_mask("pause")
        requested = col(lambda s: s.energy_requested_kwh if s.state != "done" else s.delivered_kwh, 0.0)
        return Sessions(
            active=active,
            ids=tuple(s.id if s is not None else None for s in rows),
            arrival_s=col(lambda s: s.arrival_s, 0.0),
            departure_s=col(lambda s: s.departure_s, 0.0),
            energy_requested_kwh=requested,
            energy_delivered_kwh=col(lambda s: s.delivered_kwh, 0.0),
            battery_kwh=col(lambda s: s.battery_kwh, 60.0),
            soc_arrival=col(lambda s: s.soc_arrival, 0.5),
            min_soc=col(lambda s: s.min_soc, 0.2),
            v2g=col(lambda s: float(s.v2g), 0.0).astype(bool),
            urgent=col(lambda s: float(s.urgent), 0.0).astype(bool) | (self.override_mask("urgent") & active),
            car_max_kw=col(lambda s: s.car_max_kw, np.inf),
        )

    def shift_time(self, step_s: float) -> None:
        """The wall clock was stepped by `step_s`: move the times of the last measurements with it, so
        the next interval is the real one (departures booked as wall-clock times stay where they are)."""
        for s in self.sessions.values():
            s.last_t_s += step_s

    def drain_finished(self) -> list[Session]:
        out, self.finished = self.finished, []
        return out

    def to_state(self) -> dict:
        # flat records of plain values: a shallow copy of each is the state (asdict's deep copy of every
        # value took ~0.5 ms a session, 100 ms in one tick at 200 piles)
        return {"sessions": {k: dict(vars(v)) for k, v in self.sessions.items()},
                "pending": {k: dict(vars(v)) for k, v in self.pending.items()},
                "overrides": {k: dict(vars(v)) for k, v in self.overrides.items()}}

    def restore(self, state: dict) -> None:
        """Read back `to_state()` as saved (JSON: infinities come back as null, fields may have been added)."""
        self.sessions = {k: _from_saved(Session, v) for k, v in state.get("sessions", {}).items() if k in self.pile_ids}
        self.pending = {k: _from_saved(Booking, v) for k, v in state.get("pending", {}).items() if k in self.pile_ids}
        self.overrides = {k: _from_saved(Override, v) for k, v in state.get("overrides", {}).items()
                          if k in self.pile_ids}


def _from_saved(cls: type, saved: dict):
    """A dataclass from a saved dict: unknown keys ignored, a null where a value is required gives the default."""
    out = {}
    for f in fields(cls):
        if f.name not in saved:
            continue
        v = saved[f.name]
        if v is None and f.default is not None and f.default is not MISSING:
            continue  # e.g. car_max_kw = inf, saved as null
        out[f.name] = v
    return cls(**out)
