"""What the fast loop needs from the grid side (dispatch commands, bookings, telemetry).

The daemon talks to the grid only through this interface. `grid/mqtt_link.py` and the
dispatch arbitration implement it for a real broker; `NoGridLink` is a site without one
(transformer limits only, bookings from the local API or the simulator).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from youxu.scheduler.model import DispatchLimits


@dataclass(frozen=True)
class Booking:
    """A resident's charging request for the session on a pile (youxu.session/1)."""

    pile_id: str
    departure_s: float  # epoch s
    energy_kwh: float
    v2g: bool = False
    min_soc: float = 0.2
    priority: str = "normal"  # normal | urgent
    received_s: float = 0.0
    battery_kwh: float | None = None
    soc_arrival: float | None = None
    car_max_kw: float | None = None  # the car's own charging limit, when the app knows the car


OVERRIDE_ACTIONS = ("pause", "resume", "urgent")


@dataclass(frozen=True)
class Override:
    """A person at the site overrides a pile for a while: `pause` (no power), `urgent` (full power first,
    within the hard limits) until `until_s`, or `resume` (back to normal control at once)."""

    pile_id: str
    action: str  # pause | resume | urgent
    until_s: float  # epoch s; for resume, the time it was asked
    received_s: float = 0.0
    by: str = ""  # who asked (the API token's name)


@dataclass
class TickReport:
    """What a tick did, for acknowledgements, telemetry and storage (built after the writes)."""

    t_s: float
    total_kw: float  # measured at the transformer meter
    base_kw: float
    ev_kw: float
    phase_kw: tuple[float, float, float] | None
    limit_kw: float  # tightest import limit in force
    export_limit_kw: float = float("inf")  # tightest site export limit in force (>= 0; exporting is negative kW)
    setpoints_kw: dict[str, float] = field(default_factory=dict)
    pile_status: dict[str, str] = field(default_factory=dict)
    pile_power_kw: dict[str, float] = field(default_factory=dict)
    pile_session: dict[str, str | None] = field(default_factory=dict)
    pile_energy_kwh: dict[str, float] = field(default_factory=dict)
    tick_ms: float = 0.0
    safe_mode: bool = False
    meter_ok: bool = True  # False: the meter was not read this tick, total/base/phase are assumed values
    unreachable_piles: tuple[str, ...] = ()  # piles not read this tick: their power is not a measurement
    # every pile the site can steer draws what it was told before this tick (or less) and this tick's
    # decision tells it the same: the measurement is as close to any limit as the controller takes it
    settled: bool = False
    thermal: dict[str, float] | None = None  # {ambient_c, top_oil_c, hotspot_c, limit_kw} where configured


class GridLink(Protocol):
    def limits(self, t_s: np.ndarray) -> DispatchLimits:
        """The dispatch limits and setpoints in force at each time `t_s` (epoch s)."""

    def take_bookings(self) -> list[Booking]:
        """Bookings received since the last call (never blocks)."""

    def ambient(self) -> tuple[float, float] | None:
        """The latest ambient temperature from the grid's `ambient` topic: (epoch s it was taken, °C)."""

    def push_booking(self, booking: Booking) -> None:
        """A validated booking from another input (the local API): queued with the link's own (any thread)."""

    def push_override(self, override: Override) -> None:
        """A pile override from the local API, queued for the next tick (any thread)."""

    def take_overrides(self) -> list[Override]:
        """Overrides received since the last call (never blocks)."""

    def after_tick(self, report: TickReport) -> None:
        """Hand the tick's outcome to the link (acks, telemetry, events); must never block."""

    def event(self, kind: str, message: str, **fields: object) -> None:
        """Publish an alarm or state change on `events` (queued, never blocks)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class PendingInputs:
    """Bookings and overrides queued from any thread (the grid link's, the local API's) until the
    next tick takes them: the part of `GridLink` every link shares."""

    def __init__(self) -> None:
        self._bookings: list[Booking] = []
        self._overrides: list[Override] = []
        self._inputs_lock = threading.Lock()

    def push_booking(self, booking: Booking) -> None:
        with self._inputs_lock:
            self._bookings.append(booking)

    def take_bookings(self) -> list[Booking]:
        with self._inputs_lock:
            out, self._bookings = self._bookings, []
        return out

    def push_override(self, override: Override) -> None:
        with self._inputs_lock:
            self._overrides.append(override)

    def take_overrides(self) -> list[Override]:
        with self._inputs_lock:
            out, self._overrides = self._overrides, []
        return out


class NoGridLink(PendingInputs):
    """A site without a broker: no dispatch, bookings and overrides only from `push_booking` and
    `push_override` (the local API's thread, or the simulator)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: deque[tuple[str, str, dict]] = deque(maxlen=1000)  # the latest, for inspection

    def limits(self, t_s: np.ndarray) -> DispatchLimits:
        return DispatchLimits.none(np.asarray(t_s).size)

    def ambient(self) -> tuple[float, float] | None:
        return None

    def after_tick(self, report: TickReport) -> None:
        return None

    def event(self, kind: str, message: str, **fields: object) -> None:
        self.events.append((kind, message, fields))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
