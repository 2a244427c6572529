"""The grid and the residents' app of a scenario, in-process: dispatch as the grid would send
it, and each session's booking (departure, energy, V2G consent) as its driver makes it on arrival."""

from __future__ import annotations

import numpy as np

from youxu.controller.gridlink import Booking, DispatchLimits, NoGridLink
from youxu.drivers.clock import Clock
from youxu.sim.dispatch_arrays import scenario_dispatch_fn
from youxu.sim.scenario import Scenario


class ScenarioLink(NoGridLink):
    def __init__(self, sc: Scenario, clock: Clock, book: bool = True) -> None:
        super().__init__()
        self.sc = sc
        self.clock = clock
        self.epoch0 = sc.start.timestamp()
        self._dispatch = scenario_dispatch_fn(sc)
        order = sorted(range(len(sc.sessions)), key=lambda i: sc.sessions[i].arrival_s)
        self._pending = [sc.sessions[i] for i in order] if book else []
        self._next = 0

    def limits(self, t_s: np.ndarray) -> DispatchLimits:
        return self._dispatch(t_s)

    def take_bookings(self) -> list[Booking]:
        now = self.clock.now() - self.epoch0
        out = super().take_bookings()
        while self._next < len(self._pending) and self._pending[self._next].arrival_s <= now:
            s = self._pending[self._next]
            self._next += 1
            if s.departure_s <= now:
                continue
            out.append(Booking(
                pile_id=s.pile, departure_s=self.epoch0 + s.departure_s, energy_kwh=s.energy_kwh, v2g=s.v2g,
                min_soc=s.min_soc, priority=s.priority, received_s=self.epoch0 + s.arrival_s,
                battery_kwh=s.battery_kwh, soc_arrival=s.soc_arrival, car_max_kw=s.max_kw,
            ))
        return out
