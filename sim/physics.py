"""Physics of a simulated site: which car is on which pile, what it draws, its energy and SoC.

Vectorised over piles and sessions. A pile draws min(setpoint, pile rating, what the car
accepts) while a session is plugged in; nothing inside the dead band (0 < |setpoint| <
min_kw pauses the pile); a car stops taking energy once it has what its driver asked for
or is full; V2G discharge only with pile and session consent, down to the session's
minimum state of charge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from youxu.scheduler.model import Piles, Sessions, phase_matrix
from youxu.sim.scenario import Scenario

EPS = 1e-9
PILE_KEY_S = 1e9  # sessions are keyed pile * PILE_KEY_S + arrival_s (arrivals stay below 31 years)


@dataclass(frozen=True)
class CarState:
    """The car on each pile now (aligned with the piles; zeros and False where none)."""

    has: np.ndarray  # a car is plugged in
    departure_s: np.ndarray  # s from start
    remaining_kwh: np.ndarray  # still to deliver for the driver's request
    charge_cap_kw: np.ndarray  # the pile's rating or the car's charger, the lower
    can_charge: np.ndarray  # wants energy and is not full
    can_discharge: np.ndarray  # V2G allowed by pile and driver, above the minimum SoC
    floor_kwh: np.ndarray  # net energy change down to the minimum SoC (<= 0 above it)
    soc_room_kwh: np.ndarray  # energy up to a full battery


def scenario_piles(sc: Scenario) -> Piles:
    return Piles(
        ids=tuple(p.id for p in sc.piles),
        max_kw=np.array([p.max_kw for p in sc.piles], dtype=float),
        min_kw=np.array([p.min_kw for p in sc.piles], dtype=float),
        phase_share=phase_matrix([p.phase if p.phases == 1 else "3P" for p in sc.piles], [p.phases for p in sc.piles]),
        v2g=np.array([p.v2g for p in sc.piles], dtype=bool),
        max_discharge_kw=np.array([p.max_discharge_kw if p.v2g else 0.0 for p in sc.piles], dtype=float),
    )


class SitePhysics:
    """State of every pile and car of a scenario at time t_s (seconds from start)."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.piles = scenario_piles(sc)
        n = self.piles.n
        index = {pid: i for i, pid in enumerate(self.piles.ids)}
        ss = sc.sessions
        self.session_ids = [s.id for s in ss]
        self.s_pile = np.array([index[s.pile] for s in ss], dtype=np.int64)
        self.s_arr = np.array([s.arrival_s for s in ss], dtype=float)
        self.s_dep = np.array([s.departure_s for s in ss], dtype=float)
        self.s_req = np.array([s.energy_kwh for s in ss], dtype=float)
        self.s_bat = np.array([s.battery_kwh for s in ss], dtype=float)
        self.s_soc0 = np.array([s.soc_arrival for s in ss], dtype=float)
        self.s_minsoc = np.array([s.min_soc for s in ss], dtype=float)
        self.s_v2g = np.array([s.v2g for s in ss], dtype=bool)
        self.s_urgent = np.array([s.priority == "urgent" for s in ss], dtype=bool)
        self.s_carmax = np.array([s.max_kw if s.max_kw else np.inf for s in ss], dtype=float)
        self.delivered_kwh = np.zeros(len(ss))
        self.setpoint_kw = np.zeros(n)
        self.pile_fault = np.zeros(n, dtype=bool)
        # sessions sorted per pile for O(log m) lookup of the one plugged in at t
        self._order = np.lexsort((self.s_arr, self.s_pile))
        self._pile_of_sorted = self.s_pile[self._order]
        self._key_sorted = self._pile_of_sorted * PILE_KEY_S + self.s_arr[self._order]
        self._pile_key = np.arange(n) * PILE_KEY_S
        # per-session values with a last entry for "no car", indexed by `self._index(active)`
        self._ids_ext = np.array([*self.session_ids, None], dtype=object)
        self._arr_ext = np.append(self.s_arr, 0.0)
        self._dep_ext = np.append(self.s_dep, 0.0)
        self._req_ext = np.append(self.s_req, 0.0)
        self._bat_ext = np.append(self.s_bat, 60.0)
        self._soc0_ext = np.append(self.s_soc0, 0.5)
        self._minsoc_ext = np.append(self.s_minsoc, 0.2)
        self._v2g_ext = np.append(self.s_v2g, False)
        self._urgent_ext = np.append(self.s_urgent, False)
        self._carmax_ext = np.append(self.s_carmax, np.inf)
        self._n_advanced = 0  # how many times the cars' energy changed (invalidates `_cars`)
        self._cars_memo: tuple[np.ndarray, int, CarState] | None = None
        self._known_memo: tuple[np.ndarray, float, dict] | None = None

    # ---- who is plugged in ---------------------------------------------------------
    def active_sessions(self, t_s: float) -> np.ndarray:
        """(n_piles,) index of the session plugged in at t_s on each pile, -1 where none."""
        n = self.piles.n
        out = np.full(n, -1, dtype=np.int64)
        if not self.session_ids:
            return out
        # last session per pile with arrival <= t
        pos = np.searchsorted(self._key_sorted, self._pile_key + t_s, side="right") - 1
        valid = pos >= 0
        cand = np.where(valid, self._order[np.maximum(pos, 0)], -1)
        ok = valid & (self.s_pile[np.maximum(cand, 0)] == np.arange(n)) & (t_s < self.s_dep[np.maximum(cand, 0)])
        out[ok] = cand[ok]
        return out

    def _index(self, active: np.ndarray) -> np.ndarray:
        """Index into the `_ext` arrays: the session, or the last entry where no car is plugged in."""
        return np.where(active >= 0, active, len(self.session_ids))

    # ---- what the piles draw -------------------------------------------------------
    def _cars(self, active: np.ndarray) -> CarState:
        """The state of the car on each pile, kept until the next `advance` for the same `active`."""
        hit = self._cars_memo
        if hit is not None and hit[0] is active and hit[1] == self._n_advanced:
            return hit[2]
        has = active >= 0
        i = self._index(active)
        delivered = self.delivered_now_kwh(active)
        soc0, bat = self._soc0_ext[i], self._bat_ext[i]
        remaining = np.where(has, self._req_ext[i] - delivered, 0.0)
        soc = np.where(has, soc0 + delivered / bat, 0.0)
        cars = CarState(
            has=has,
            departure_s=np.where(has, self._dep_ext[i], 0.0),
            remaining_kwh=remaining,
            charge_cap_kw=np.minimum(self.piles.max_kw, self._carmax_ext[i]),
            can_charge=(remaining > 1e-9) & (soc < 1.0 - 1e-9),
            can_discharge=self.piles.v2g & self._v2g_ext[i] & (soc > self._minsoc_ext[i] + 1e-9),
            floor_kwh=np.where(has, (self._minsoc_ext[i] - soc0) * bat - delivered, 0.0),
            soc_room_kwh=np.where(has, (1.0 - soc0) * bat - delivered, 0.0),
        )
        self._cars_memo = (active, self._n_advanced, cars)
        return cars

    def power_kw(self, t_s: float, active: np.ndarray | None = None) -> np.ndarray:
        """(n_piles,) power each pile draws now under its setpoint."""
        active = self.active_sessions(t_s) if active is None else active
        c = self._cars(active)
        p = self.piles
        sp = self.setpoint_kw
        charge = np.where(c.can_charge, np.minimum(sp, c.charge_cap_kw), 0.0)
        discharge = np.where(c.can_discharge, np.maximum(sp, -p.max_discharge_kw), 0.0)
        out = np.where(sp >= 0, np.maximum(charge, 0.0), discharge)
        out = np.where(np.abs(out) < p.min_kw - 1e-6, 0.0, out)  # the dead band pauses the pile
        return np.where(c.has & ~self.pile_fault, out, 0.0)

    def advance(self, t_s: float, dt_s: float, active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run [t_s, t_s + dt_s) at the present setpoints; return (active sessions, energy kWh per pile).

        `active` is `active_sessions(t_s)` when the caller has it already."""
        active = self.active_sessions(t_s) if active is None else active
        c = self._cars(active)
        # a session leaving inside the interval only draws until its departure
        dt_eff = np.where(c.has, np.clip(c.departure_s - t_s, 0.0, dt_s), 0.0)
        e = self.power_kw(t_s, active) * dt_eff / 3600.0
        # a car stops at its request (charging) or its minimum SoC (discharging)
        e = np.where(e > 0, np.minimum(e, np.maximum(np.minimum(c.remaining_kwh, c.soc_room_kwh), 0.0)), e)
        e = np.where(e < 0, np.maximum(e, np.minimum(c.floor_kwh, 0.0)), e)
        self.delivered_kwh[active[c.has]] += e[c.has]  # a session is on one pile at a time
        self._n_advanced += 1
        return active, e

    def delivered_now_kwh(self, active: np.ndarray) -> np.ndarray:
        """(n_piles,) net energy delivered so far to the session on each pile (0 where none)."""
        if not self.session_ids:
            return np.zeros(active.size)
        return np.where(active >= 0, self.delivered_kwh[np.maximum(active, 0)], 0.0)

    # ---- the sessions as a controller would know them ------------------------------
    def known_sessions(self, t_s: float, epoch0: float, active: np.ndarray | None = None) -> Sessions:
        """Sessions plugged in now, with their declared departure and energy (as booked).

        What the bookings say is kept (read-only) while the same `active` array is passed in;
        only the energy delivered is new every time."""
        active = self.active_sessions(t_s) if active is None else active
        memo = self._known_memo
        if memo is None or memo[0] is not active or memo[1] != epoch0:
            i = self._index(active)
            booked = {
                "active": active >= 0,
                "ids": tuple(self._ids_ext[i].tolist()),
                "arrival_s": self._arr_ext[i] + epoch0,
                "departure_s": self._dep_ext[i] + epoch0,
                "energy_requested_kwh": self._req_ext[i],
                "battery_kwh": self._bat_ext[i],
                "soc_arrival": self._soc0_ext[i],
                "min_soc": self._minsoc_ext[i],
                "v2g": self._v2g_ext[i],
                "urgent": self._urgent_ext[i],
                "car_max_kw": self._carmax_ext[i],
            }
            for v in booked.values():
                if isinstance(v, np.ndarray):
                    v.flags.writeable = False
            memo = self._known_memo = (active, epoch0, booked)
        return Sessions(energy_delivered_kwh=self.delivered_now_kwh(active), **memo[2])

    def deliverable_kwh(self) -> np.ndarray:
        """The most each session's pile and car could physically deliver in its window."""
        rate = np.minimum(self.piles.max_kw[self.s_pile], self.s_carmax)
        soc_room = (1.0 - self.s_soc0) * self.s_bat
        return np.minimum(rate * (self.s_dep - self.s_arr) / 3600.0, soc_room)


class PlugTimeline:
    """Who is plugged in where, for a run that only moves forward in time.

    Gives what `SitePhysics.active_sessions(t_s)` gives, from the arrivals and departures
    since the previous call instead of a search: the same array object while nobody comes
    or goes, a new one when somebody does (so an array handed out never changes).
    """

    def __init__(self, phys: SitePhysics) -> None:
        self._pile = phys.s_pile.tolist()
        self._arr = phys.s_arr.tolist()
        self._dep = phys.s_dep.tolist()
        self._by_arrival = np.argsort(phys.s_arr, kind="stable").tolist()
        self._by_departure = np.argsort(phys.s_dep, kind="stable").tolist()
        self._next_arrival = self._next_departure = 0
        self._t_s = -np.inf
        self.active = np.full(phys.piles.n, -1, dtype=np.int64)

    def at(self, t_s: float) -> np.ndarray:
        if t_s < self._t_s:
            raise ValueError(f"the timeline only moves forward ({t_s} s after {self._t_s} s)")
        self._t_s = t_s
        active = self.active
        leaving, coming = [], []
        by_dep, by_arr = self._by_departure, self._by_arrival
        while self._next_departure < len(by_dep) and self._dep[by_dep[self._next_departure]] <= t_s:
            s = by_dep[self._next_departure]
            if active[self._pile[s]] == s:  # a visit between two calls was never plugged in here
                leaving.append(s)
            self._next_departure += 1
        while self._next_arrival < len(by_arr) and self._arr[by_arr[self._next_arrival]] <= t_s:
            s = by_arr[self._next_arrival]
            if self._dep[s] > t_s:
                coming.append(s)
            self._next_arrival += 1
        if leaving or coming:
            active = active.copy()
            for s in leaving:
                active[self._pile[s]] = -1
            for s in coming:
                active[self._pile[s]] = s
            self.active = active
        return self.active
