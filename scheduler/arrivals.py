"""The cars still to come: an arrival model per time of day, and the reserve it asks the plan to keep.

A rolling plan knows only the cars plugged in now. Left to itself it moves their energy into
the cheap, low-load hours ahead, and the cars that arrive later find that room already taken
(an old community's late-evening arrivals with a heating night: every car short on the tight
phase). The plan therefore carries, next to the real sessions, one *expected* session per
phase group and hour ahead: the cars the idle piles of that group are expected to see arrive
in that hour, with their expected energy and stay. Their energy is soft and worth less than any
real car's (`LpWeights.reserve_unmet_per_kwh`), so they never take a real car's energy; they
only stop the plan from promising the same room twice.

Learnt online from the sessions the site sees (first seen = arrival): per hour of local time the
hazard that an idle pile gets a car (arrivals over idle pile-hours), the declared stay, and the
energy asked. From a cold start the priors below stand in (residential arrivals shaped like
ElaadNL's public distributions: most cars come home between 16:00 and 21:00 and stay the night,
about 0.8 sessions per pile and day, 10 kWh each), worth `prior_days` of observation.

Pure and causal: `observe` in time order, `expected` for a horizon. Nothing in the safety path
uses it: with no model (or a broken one) the plan has no reserve and stays correct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from youxu.scheduler.model import ExpectedArrivals, Piles, Sessions

HOURS = 24
# share of a day's residential arrivals in each local hour (0-23), after ElaadNL's public arrival distribution
PRIOR_ARRIVAL_SHARE = np.array([
    0.6, 0.3, 0.2, 0.2, 0.2, 0.4, 1.0, 2.0, 3.0, 3.5, 3.5, 3.5,
    3.8, 4.0, 4.5, 5.5, 7.5, 9.5, 10.5, 9.5, 7.5, 6.0, 4.5, 2.5,
])
PRIOR_DEPARTURE_HOUR = 7.5  # cars that come home in the afternoon or evening leave in the morning
PRIOR_DAY_STAY_H = 4.0  # cars that arrive in the morning or at noon


def _prior_stay_h(hour: np.ndarray) -> np.ndarray:
    overnight = (hour >= 15) | (hour < 5)
    return np.where(overnight, (PRIOR_DEPARTURE_HOUR - hour) % 24.0, PRIOR_DAY_STAY_H)


@dataclass(frozen=True)
class ArrivalConfig:
    utc_offset_s: int = 8 * 3600  # local time for the hour of day (Beijing)
    sessions_per_pile_day: float = 0.8  # cold-start prior
    energy_kwh: float = 10.0  # cold-start prior of one session's request
    prior_days: float = 2.0  # what the priors are worth, in days of observation
    min_expected_kwh: float = 0.25  # an hour-group with less expected energy gets no reserve session


def _prior_hazard(cfg: ArrivalConfig) -> np.ndarray:
    """(24,) per idle pile-hour: the arrival rate that, starting from all piles idle at 05:00, gives the
    prior's sessions per pile and day in its hourly shape."""
    share = PRIOR_ARRIVAL_SHARE / PRIOR_ARRIVAL_SHARE.sum()
    order = (np.arange(HOURS) + 5) % HOURS  # a pile's day starts when the night's cars have left
    arrivals = cfg.sessions_per_pile_day * share[order]
    idle_before = 1.0 - np.concatenate([[0.0], np.cumsum(arrivals)[:-1]])
    hazard = np.empty(HOURS)
    hazard[order] = np.clip(arrivals / np.maximum(idle_before, 1e-3), 0.0, 1.0)
    return hazard


class ArrivalModel:
    """Learns when cars arrive, how long they stay and what they ask for; forecasts the cars still to come."""

    def __init__(self, config: ArrivalConfig | None = None) -> None:
        self.cfg = cfg = config or ArrivalConfig()
        # pseudo-observations of the priors, per idle pile (they scale with the site's piles on first use)
        self._hazard0 = _prior_hazard(cfg)
        self._idle_h = np.zeros(HOURS)  # idle pile-hours observed in each hour of the day
        self._arrivals = np.zeros(HOURS)
        self._stay_h = np.zeros(HOURS)  # sum of declared stays of the arrivals in each hour
        self._energy_kwh = 0.0  # sum of requests
        self._n = 0
        self._prior_idle_h = 0.0  # pile-hours the priors are worth per hour of the day
        self._seen: set[str] = set()
        self.last_t_s: float | None = None

    def _hour(self, t_s: np.ndarray | float) -> np.ndarray:
        return np.floor(((np.asarray(t_s, dtype=float) + self.cfg.utc_offset_s) % 86400.0) / 3600.0).astype(np.int64)

    # ---- learning ----------------------------------------------------------------------------------
    def observe(self, t_s: float, sessions: Sessions, online: np.ndarray | None = None) -> None:
        """One snapshot: idle time since the last one, and the sessions seen for the first time."""
        if self.last_t_s is not None and t_s <= self.last_t_s:
            return
        n = sessions.active.size
        if self._prior_idle_h == 0.0:
            self._prior_idle_h = self.cfg.prior_days * max(n, 1) * 0.5
        if self.last_t_s is not None:
            idle = int(np.count_nonzero(~sessions.active & (True if online is None else online)))
            self._add_idle(self.last_t_s, t_s, idle)
        for i in np.flatnonzero(sessions.active):
            sid = sessions.ids[i]
            if sid is None or sid in self._seen:
                continue
            self._seen.add(sid)
            arr = float(sessions.arrival_s[i]) if np.isfinite(sessions.arrival_s[i]) else t_s
            h = int(self._hour(arr))
            self._arrivals[h] += 1.0
            self._stay_h[h] += max(float(sessions.departure_s[i]) - arr, 0.0) / 3600.0
            self._energy_kwh += float(sessions.energy_requested_kwh[i])
            self._n += 1
        if len(self._seen) > 4 * max(n, 1) + 64:  # forget ids long gone (only the plugged-in ones can repeat)
            self._seen = {sid for sid in sessions.ids if sid is not None}
        self.last_t_s = float(t_s)

    def _add_idle(self, t0: float, t1: float, idle: int) -> None:
        if idle <= 0 or t1 - t0 > 6 * 3600:  # a gap in the observations teaches nothing about idle time
            return
        edges = np.arange(math.floor(t0 / 3600.0) * 3600.0, t1 + 3600.0, 3600.0)
        a, b = np.maximum(edges[:-1], t0), np.minimum(edges[1:], t1)
        keep = b > a
        np.add.at(self._idle_h, self._hour(a[keep]), idle * (b[keep] - a[keep]) / 3600.0)

    # ---- what it believes --------------------------------------------------------------------------
    def hazard(self) -> np.ndarray:
        """(24,) arrivals per idle pile and hour, prior and observation together."""
        p = self._prior_idle_h or 1.0  # nothing seen yet: the prior alone
        return (self._arrivals + p * self._hazard0) / np.maximum(self._idle_h + p, 1e-9)

    def stay_h(self) -> np.ndarray:
        prior_n = (self._prior_idle_h or 1.0) * self._hazard0  # the arrivals the priors stand for
        prior = _prior_stay_h(np.arange(HOURS) + 0.5)
        return (self._stay_h + prior_n * prior) / np.maximum(self._arrivals + prior_n, 1e-9)

    def energy_kwh(self) -> float:
        w = 5.0  # the prior is worth five sessions
        return (self._energy_kwh + w * self.cfg.energy_kwh) / (self._n + w)

    def expected(self, t0_s: float, horizon_end_s: float, piles: Piles, sessions: Sessions,
                 online: np.ndarray) -> ExpectedArrivals:
        """The reserve sessions from t0 to the horizon's end: per phase group and hour, the cars the piles idle
        now are expected to see arrive (each idle pile at most once, by the hazard's survival)."""
        idle = ~sessions.active & online
        if not idle.any() or horizon_end_s <= t0_s:
            return ExpectedArrivals.none()
        groups, group_of = np.unique(np.round(piles.phase_share, 6), axis=0, return_inverse=True)
        group_of = group_of.reshape(-1)
        first = math.floor((t0_s + self.cfg.utc_offset_s) / 3600.0)
        starts = (first + np.arange(math.ceil((horizon_end_s - t0_s) / 3600.0) + 1)) * 3600.0 \
            - self.cfg.utc_offset_s
        starts = starts[starts < horizon_end_s]
        a = np.maximum(starts, t0_s)
        span_h = (np.minimum(starts + 3600.0, horizon_end_s) - a) / 3600.0
        hour = self._hour(a)
        rate = np.clip(self.hazard()[hour] * span_h, 0.0, 1.0)
        survive = np.concatenate([[1.0], np.cumprod(1.0 - rate)[:-1]])
        per_pile = survive * rate  # (B,) expected arrivals at one pile idle now
        arr_s = a + 0.5 * span_h * 3600.0
        end = np.minimum(arr_s + self.stay_h()[hour] * 3600.0, horizon_end_s)
        e_kwh = self.energy_kwh()
        pile, start, stop, energy, max_kw, keys = [], [], [], [], [], []
        for g in range(groups.shape[0]):
            members = np.flatnonzero(idle & (group_of == g))
            if members.size == 0:
                continue
            count = per_pile * members.size
            kw = count * float(piles.max_kw[members].mean())
            want = np.minimum(count * e_kwh, kw * (end - arr_s) / 3600.0)
            for b in np.flatnonzero(want >= self.cfg.min_expected_kwh):
                pile.append(int(members[0]))
                start.append(float(arr_s[b]))
                stop.append(float(end[b]))
                energy.append(float(want[b]))
                max_kw.append(float(kw[b]))
                keys.append(f"~arrivals:{g}:{int(starts[b])}")
        if not pile:
            return ExpectedArrivals.none()
        return ExpectedArrivals(np.array(pile, dtype=np.int64), np.array(start), np.array(stop), np.array(energy),
                                np.array(max_kw), tuple(keys))
