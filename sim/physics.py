"""Physics of a simulated site: which car is on which pile, what it draws, its energy and SoC.

Vectorised over piles and sessions. A pile draws min(setpoint, pile rating, what the car
accepts) while a session is plugged in; nothing inside the dead band (0 < |setpoint| <
min_kw pauses the pile); a car stops taking energy once it has what its driver asked for
or is full; V2G discharge only with pile and session consent, down to the session's
minimum state of charge.
"""

from __future__ import annotations

import numpy as np

from scheduler.model import Piles, Sessions, phase_matrix
from sim.scenario import Scenario

EPS = 1e-9


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
        self._arr_sorted = self.s_arr[self._order]

    # ---- who is plugged in ---------------------------------------------------------
    def active_sessions(self, t_s: float) -> np.ndarray:
        """(n_piles,) index of the session plugged in at t_s on each pile, -1 where none."""
        n = self.piles.n
        out = np.full(n, -1, dtype=np.int64)
        if not self.session_ids:
            return out
        # last session per pile with arrival <= t
        key = self._pile_of_sorted * 1e9 + self._arr_sorted
        probe = np.arange(n) * 1e9 + t_s
        pos = np.searchsorted(key, probe, side="right") - 1
        valid = pos >= 0
        cand = np.where(valid, self._order[np.maximum(pos, 0)], -1)
        ok = valid & (self.s_pile[np.maximum(cand, 0)] == np.arange(n)) & (t_s < self.s_dep[np.maximum(cand, 0)])
        out[ok] = cand[ok]
        return out

    # ---- what the piles draw -------------------------------------------------------
    def power_kw(self, t_s: float, active: np.ndarray | None = None) -> np.ndarray:
        """(n_piles,) power each pile draws now under its setpoint."""
        active = self.active_sessions(t_s) if active is None else active
        has = active >= 0
        s = np.maximum(active, 0)
        p = self.piles
        sp = self.setpoint_kw
        remaining = np.where(has, self.s_req[s] - self.delivered_kwh[s], 0.0)
        soc = np.where(has, self.s_soc0[s] + self.delivered_kwh[s] / self.s_bat[s], 0.0)
        charge = np.minimum(np.minimum(sp, p.max_kw), self.s_carmax[s])
        charge = np.where((remaining > 1e-9) & (soc < 1.0 - 1e-9), charge, 0.0)
        v2g_ok = p.v2g & self.s_v2g[s] & (soc > self.s_minsoc[s] + 1e-9)
        discharge = np.where(v2g_ok, np.maximum(sp, -p.max_discharge_kw), 0.0)
        out = np.where(sp >= 0, np.maximum(charge, 0.0), discharge)
        out = np.where(np.abs(out) < p.min_kw - 1e-6, 0.0, out)  # the dead band pauses the pile
        return np.where(has & ~self.pile_fault, out, 0.0)

    def advance(self, t_s: float, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Run [t_s, t_s + dt_s) at the present setpoints; return (active sessions, energy kWh per pile)."""
        active = self.active_sessions(t_s)
        has = active >= 0
        s = np.maximum(active, 0)
        # a session leaving inside the interval only draws until its departure
        dt_eff = np.where(has, np.clip(self.s_dep[s] - t_s, 0.0, dt_s), 0.0)
        p_kw = self.power_kw(t_s, active)
        e = p_kw * dt_eff / 3600.0
        # a car stops at its request (charging) or its minimum SoC (discharging)
        remaining = np.where(has, self.s_req[s] - self.delivered_kwh[s], 0.0)
        floor = np.where(has, (self.s_minsoc[s] - self.s_soc0[s]) * self.s_bat[s] - self.delivered_kwh[s], 0.0)
        soc_room = np.where(has, (1.0 - self.s_soc0[s]) * self.s_bat[s] - self.delivered_kwh[s], 0.0)
        e = np.where(e > 0, np.minimum(e, np.maximum(np.minimum(remaining, soc_room), 0.0)), e)
        e = np.where(e < 0, np.maximum(e, np.minimum(floor, 0.0)), e)
        np.add.at(self.delivered_kwh, s[has], e[has])
        return active, e

    # ---- the sessions as a controller would know them ------------------------------
    def known_sessions(self, t_s: float, epoch0: float, active: np.ndarray | None = None) -> Sessions:
        """Sessions plugged in now, with their declared departure and energy (as booked)."""
        active = self.active_sessions(t_s) if active is None else active
        has = active >= 0
        s = np.maximum(active, 0)
        n = self.piles.n

        def pick(arr: np.ndarray, default: float) -> np.ndarray:
            return np.where(has, arr[s], default) if len(self.session_ids) else np.full(n, default)

        return Sessions(
            active=has,
            ids=tuple(self.session_ids[i] if i >= 0 else None for i in active),
            arrival_s=pick(self.s_arr, 0.0) + epoch0,
            departure_s=pick(self.s_dep, 0.0) + epoch0,
            energy_requested_kwh=pick(self.s_req, 0.0),
            energy_delivered_kwh=pick(self.delivered_kwh, 0.0),
            battery_kwh=pick(self.s_bat, 60.0),
            soc_arrival=pick(self.s_soc0, 0.5),
            min_soc=pick(self.s_minsoc, 0.2),
            v2g=pick(self.s_v2g.astype(float), 0.0).astype(bool),
            urgent=pick(self.s_urgent.astype(float), 0.0).astype(bool),
            car_max_kw=pick(self.s_carmax, np.inf),
        )

    def deliverable_kwh(self) -> np.ndarray:
        """The most each session's pile and car could physically deliver in its window."""
        rate = np.minimum(self.piles.max_kw[self.s_pile], self.s_carmax)
        soc_room = (1.0 - self.s_soc0) * self.s_bat
        return np.minimum(rate * (self.s_dep - self.s_arr) / 3600.0, soc_room)
