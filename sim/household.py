"""Household (non-EV) load behind one transformer: N homes, 1-minute resolution, per phase.

A bottom-up stochastic model. Each home has a type (size, lifestyle, appliance ownership)
and a phase. Each day, appliances switch on as random events whose start times follow the
home's activity (who is at home and awake) times the appliance's own time-of-day habit;
air conditioning follows the outdoor temperature, electric heating (煤改电) the cold.
Summing hundreds of spiky homes gives the smooth Chinese residential curve: night valley
02:00-06:00, morning rise, lunch bump, evening peak 19:00-22:00.

Vectorised: events become +P/-P steps in a difference array (one `bincount`), summed per
phase (or per home when asked), then integrated with `cumsum`. Every figure is documented
with its source in sim/PARAMETERS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np

from youxu.sim.tou import LocalAxis

MIN_S = 60
DAY_MIN = 1440

# ---- households ---------------------------------------------------------------------


@dataclass(frozen=True)
class HouseholdType:
    name: str
    share: float  # of homes
    persons: float
    home_daytime_p: float  # probability someone is at home on weekdays (retired, carer)
    activity: float  # multiplies appliance event rates
    ac_units: float  # mean air-conditioners used (Poisson, capped at 3)
    standby_kw: tuple[float, float]  # uniform range: router, set-top box, standby


HOUSEHOLD_TYPES: tuple[HouseholdType, ...] = (
    HouseholdType("single", 0.18, 1.0, 0.10, 0.55, 0.9, (0.04, 0.08)),
    HouseholdType("couple", 0.30, 2.0, 0.20, 0.85, 1.3, (0.05, 0.11)),
    HouseholdType("family", 0.34, 3.3, 0.45, 1.10, 1.8, (0.06, 0.14)),
    HouseholdType("elderly", 0.18, 2.0, 0.95, 0.80, 1.1, (0.05, 0.10)),
)

# activity: probability someone is at home and awake, per local hour 0..23
ACTIVITY = {
    ("worker", False): (
        0.02, 0.01, 0.01, 0.01, 0.01, 0.05, 0.45, 0.85, 0.35, 0.06, 0.05, 0.05,
        0.06, 0.05, 0.05, 0.06, 0.10, 0.30, 0.70, 0.95, 1.00, 0.95, 0.75, 0.35,
    ),
    ("worker", True): (
        0.05, 0.02, 0.01, 0.01, 0.01, 0.02, 0.10, 0.35, 0.65, 0.75, 0.70, 0.70,
        0.65, 0.50, 0.45, 0.45, 0.50, 0.60, 0.80, 0.95, 1.00, 0.95, 0.80, 0.45,
    ),
    ("home", False): (
        0.02, 0.01, 0.01, 0.01, 0.02, 0.15, 0.65, 0.90, 0.80, 0.60, 0.60, 0.90,
        0.85, 0.45, 0.50, 0.60, 0.65, 0.90, 1.00, 1.00, 0.90, 0.70, 0.30, 0.08,
    ),
    ("home", True): (
        0.02, 0.01, 0.01, 0.01, 0.02, 0.10, 0.50, 0.85, 0.85, 0.70, 0.70, 0.90,
        0.85, 0.50, 0.55, 0.60, 0.70, 0.90, 1.00, 1.00, 0.90, 0.75, 0.35, 0.10,
    ),
}  # fmt: skip


# ---- appliances ---------------------------------------------------------------------


@dataclass(frozen=True)
class Appliance:
    name: str
    ownership: float  # share of homes that own it
    events_per_day: float  # per owning home at activity 1.0, weekday
    weekend_factor: float
    duration_min: tuple[float, float]  # lognormal (median, sigma)
    power_kw: tuple[float, float]  # uniform range, drawn once per home
    habit: tuple[float, ...]  # weight per local hour 0..23 (multiplied with activity)
    seasons: tuple[str, ...] = ("summer", "winter", "shoulder")
    dark: bool = False  # weight additionally by darkness (lighting)
    winter_duration_factor: float = 1.0
    winter_rate_factor: float = 1.0


_FLAT = (1.0,) * 24
APPLIANCES: tuple[Appliance, ...] = (
    Appliance("lighting", 1.00, 2.2, 1.0, (110, 0.5), (0.03, 0.15), _FLAT, dark=True, winter_rate_factor=1.3),
    Appliance("cooking", 0.90, 1.8, 1.3, (25, 0.4), (0.6, 1.6), (
        0, 0, 0, 0, 0, 0.1, 0.8, 1.0, 0.3, 0.1, 0.3, 1.0, 0.8, 0.1, 0.1, 0.1, 0.3, 1.0, 1.0, 0.5, 0.1, 0, 0, 0)),
    Appliance("kettle", 0.85, 2.5, 1.1, (4, 0.3), (1.5, 2.0), (
        0, 0, 0, 0, 0, 0.2, 1.0, 1.0, 0.6, 0.6, 0.6, 0.5, 0.5, 0.6, 0.6, 0.6, 0.5, 0.5, 0.6, 1.0, 1.0, 0.8, 0.3, 0.1)),
    Appliance("microwave", 0.60, 1.0, 1.0, (4, 0.4), (0.9, 1.2), (
        0, 0, 0, 0, 0, 0, 0.8, 1.0, 0.4, 0.1, 0.1, 0.6, 1.0, 0.3, 0.1, 0.1, 0.2, 0.6, 1.0, 0.6, 0.3, 0.2, 0.1, 0)),
    Appliance("water_heater", 0.55, 0.75, 1.1, (40, 0.4), (2.0, 3.0), (
        0.3, 0.1, 0, 0, 0, 0.1, 0.6, 0.8, 0.4, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.3, 0.5, 0.7, 0.9, 1, 0.9, 0.6),
        winter_duration_factor=1.4),
    Appliance("washing", 0.95, 0.45, 1.8, (70, 0.25), (0.35, 0.6), (
        0, 0, 0, 0, 0, 0, 0.2, 0.6, 1.0, 1.0, 1.0, 0.6, 0.3, 0.4, 0.6, 0.6, 0.5, 0.3, 0.3, 0.6, 0.8, 0.6, 0.2, 0)),
    Appliance("tv", 0.95, 1.5, 1.3, (150, 0.5), (0.10, 0.25), (
        0.2, 0, 0, 0, 0, 0, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.4, 0.3, 0.3, 0.3, 0.4, 0.5, 0.8, 1.0, 1.0, 0.8, 0.6, 0.3)),
    Appliance("computer", 0.70, 1.0, 1.2, (120, 0.6), (0.08, 0.20), (
        0.3, 0.1, 0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.3, 0.4, 0.4, 0.4, 0.4, 0.4, 0.5, 0.8, 1, 1, 0.8, 0.5)),
    Appliance("small_heat", 0.80, 0.8, 1.2, (6, 0.5), (1.0, 1.6), (
        0, 0, 0, 0, 0, 0.1, 1.0, 1.0, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 0.6, 0.2)),
    Appliance("cleaning", 0.70, 0.3, 1.8, (20, 0.4), (0.8, 1.4), (
        0, 0, 0, 0, 0, 0, 0, 0.3, 0.8, 1.0, 1.0, 0.6, 0.3, 0.4, 0.8, 0.8, 0.6, 0.4, 0.3, 0.4, 0.4, 0.2, 0, 0)),
    Appliance("blanket_heater", 0.30, 0.6, 1.1, (180, 0.4), (0.1, 1.0), (
        0.3, 0.1, 0, 0, 0, 0, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.2, 0.3, 0.5, 0.8, 1.0, 1.0, 0.9, 0.6),
        seasons=("winter",)),
)  # fmt: skip

# ---- climate ------------------------------------------------------------------------


@dataclass(frozen=True)
class Climate:
    """Daily outdoor temperature: mean max/min, day-to-day standard deviation (°C)."""

    t_max_c: float
    t_min_c: float
    day_sd_c: float


CLIMATES = {  # Beijing normals (1991-2020): July, January, April/October
    "summer": Climate(31.5, 22.5, 1.2),
    "winter": Climate(1.5, -8.0, 2.0),
    "shoulder": Climate(20.0, 8.0, 3.0),
}
SEASONS = tuple(CLIMATES)
LATITUDE_DEG = 39.9
SOLAR_NOON_H = 12.0 + (120.0 - 116.4) / 15.0  # Beijing is 3.6° west of the UTC+8 meridian


def sun_times_h(d: date) -> tuple[float, float]:
    """Local sunrise and sunset (hours) in Beijing on date `d`."""
    doy = d.timetuple().tm_yday
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.0)
    cos_w = -np.tan(np.radians(LATITUDE_DEG)) * np.tan(decl)
    half_day_h = np.degrees(np.arccos(np.clip(cos_w, -1.0, 1.0))) / 15.0
    return SOLAR_NOON_H - half_day_h, SOLAR_NOON_H + half_day_h


def temperature_c(axis: LocalAxis, climate: Climate, rng: np.random.Generator) -> np.ndarray:
    """Outdoor temperature per interval: daily cosine (min 04:00, max 15:00) with AR(1) daily anomalies."""
    n_days = len(axis.dates()) + 1
    anomaly = np.empty(n_days)
    anomaly[0] = rng.normal(0.0, climate.day_sd_c)
    for k in range(1, n_days):
        anomaly[k] = 0.6 * anomaly[k - 1] + rng.normal(0.0, climate.day_sd_c * 0.8)
    anomaly = np.clip(anomaly, -1.5 * climate.day_sd_c, 1.5 * climate.day_sd_c)  # no record heat waves
    spread = (climate.t_max_c - climate.t_min_c) * rng.uniform(0.8, 1.2, n_days)
    h = axis.local_hour()
    day = axis.day_index()
    # asymmetric diurnal wave: warming 04:00 -> 15:00, cooling 15:00 -> 04:00
    phase = np.where((h >= 4) & (h < 15), (h - 4) / 11.0, ((h - 15) % 24) / 13.0)
    wave = np.where((h >= 4) & (h < 15), -np.cos(np.pi * phase), np.cos(np.pi * phase))
    mid = (climate.t_max_c + climate.t_min_c) / 2 + anomaly[day]
    return mid + wave * spread[day] / 2


# ---- electric heating (煤改电) -------------------------------------------------------


@dataclass(frozen=True)
class Heating:
    """Electric space heating of coal-to-electricity homes (share of all homes, by technology)."""

    share: float = 0.0  # share of homes heated electrically
    heat_pump_share: float = 0.6  # of electrically heated homes: air-source heat pump
    storage_share: float = 0.3  # thermal-storage heaters charged in the heating valley from 20:00
    # the rest: direct electric heaters used in the evening
    heat_pump_kw: tuple[float, float] = (1.5, 3.0)  # rated electric input
    storage_kw: tuple[float, float] = (2.5, 5.0)
    storage_kwh_per_k_day: tuple[float, float] = (1.0, 1.8)
    storage_on_h: float = 20.0  # Beijing 煤改电 valley price 20:00-08:00
    direct_kw: tuple[float, float] = (1.0, 2.0)


INDOOR_C = 18.0
HEAT_DESIGN_C = -12.0  # outdoor temperature at which a heat pump runs at its rating


def heat_pump_cop(t_c: np.ndarray | float) -> np.ndarray:
    return np.clip(2.8 + 0.07 * np.asarray(t_c, dtype=float), 1.8, 4.0)


def heat_pump_fraction(t_c: np.ndarray) -> np.ndarray:
    """Electric input of a heat pump as a fraction of its rating, by outdoor temperature."""
    demand = np.clip((INDOOR_C - t_c) / (INDOOR_C - HEAT_DESIGN_C), 0.08, 1.0)
    return np.clip(demand * heat_pump_cop(HEAT_DESIGN_C) / heat_pump_cop(t_c), 0.05, 1.0)


def ac_fraction(t_c: np.ndarray) -> np.ndarray:
    """Electric input of a running inverter air-conditioner as a fraction of its rating."""
    return np.clip(0.30 + 0.05 * (t_c - 24.0), 0.25, 1.0)


# ---- the model ----------------------------------------------------------------------


@dataclass(frozen=True)
class HouseholdParams:
    n: int = 500
    season: str = "summer"
    types: tuple[HouseholdType, ...] = HOUSEHOLD_TYPES
    appliances: tuple[Appliance, ...] = APPLIANCES
    phase_shares: tuple[float, float, float] = (0.35, 0.33, 0.32)  # configurable imbalance
    ac_scale: float = 1.0  # multiplies AC units per home
    ac_rated_kw: tuple[float, float] = (0.8, 1.3)
    fridge_kw: tuple[float, float] = (0.08, 0.15)
    water_heater_standing_kw: float = 0.03  # standing loss of a storage water heater, kept warm
    heating: Heating = field(default_factory=Heating)
    activity_scale: float = 1.0

    def with_(self, **changes: object) -> HouseholdParams:
        return replace(self, **changes)


@dataclass(frozen=True)
class Homes:
    """The static population: one entry per home."""

    type_idx: np.ndarray
    phase: np.ndarray  # 0, 1, 2
    home_daytime: np.ndarray  # bool: lifestyle "home" (else "worker")
    activity: np.ndarray
    standby_kw: np.ndarray
    ac_units: np.ndarray
    ac_kw: np.ndarray  # rating per unit
    heating: np.ndarray  # 0 none, 1 heat pump, 2 storage, 3 direct
    heating_kw: np.ndarray
    storage_kwh_per_k: np.ndarray


@dataclass
class HouseholdLoad:
    axis: LocalAxis
    phase_kw: np.ndarray  # (n_intervals, 3)
    temperature_c: np.ndarray  # (n_intervals,)
    homes: Homes
    per_home_kw: np.ndarray | None = None  # (n_homes, n_intervals) when asked for

    @property
    def total_kw(self) -> np.ndarray:
        return self.phase_kw.sum(axis=1)


def draw_homes(params: HouseholdParams, rng: np.random.Generator) -> Homes:
    n = params.n
    shares = np.array([t.share for t in params.types])
    type_idx = rng.choice(len(params.types), size=n, p=shares / shares.sum())
    ph = np.asarray(params.phase_shares, dtype=float)
    counts = np.floor(ph / ph.sum() * n).astype(int)
    counts[: n - counts.sum()] += 1
    phase = rng.permutation(np.repeat(np.arange(3), counts))
    t = [params.types[i] for i in type_idx]
    home_p = np.array([x.home_daytime_p for x in t])
    lo = np.array([x.standby_kw[0] for x in t])
    hi = np.array([x.standby_kw[1] for x in t])
    ac_mean = np.array([x.ac_units for x in t]) * params.ac_scale
    h = params.heating
    u = rng.random(n)
    heating = np.zeros(n, dtype=np.int8)
    electric = rng.random(n) < h.share
    heating[electric & (u < h.heat_pump_share)] = 1
    heating[electric & (u >= h.heat_pump_share) & (u < h.heat_pump_share + h.storage_share)] = 2
    heating[electric & (u >= h.heat_pump_share + h.storage_share)] = 3
    kw = np.zeros(n)
    for code, rng_kw in ((1, h.heat_pump_kw), (2, h.storage_kw), (3, h.direct_kw)):
        sel = heating == code
        kw[sel] = rng.uniform(*rng_kw, sel.sum())
    return Homes(
        type_idx=type_idx,
        phase=phase,
        home_daytime=rng.random(n) < home_p,
        activity=np.array([x.activity for x in t]) * params.activity_scale * rng.lognormal(0.0, 0.25, n),
        standby_kw=rng.uniform(lo, hi),
        ac_units=np.minimum(rng.poisson(ac_mean), 3),
        ac_kw=rng.uniform(*params.ac_rated_kw, n),
        heating=heating,
        heating_kw=kw,
        storage_kwh_per_k=rng.uniform(*h.storage_kwh_per_k_day, n),
    )


class _Events:
    """Collects (home, start, end, kW) steps; `modulated` ones are multiplied by a time series later."""

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[np.ndarray, ...]]] = {}

    def add(self, kind: str, home: np.ndarray, start: np.ndarray, end: np.ndarray, kw: np.ndarray) -> None:
        self.parts.setdefault(kind, []).append((home, start, end, kw))

    def integrate(self, kind: str, group: np.ndarray, n_groups: int, n: int) -> np.ndarray:
        if kind not in self.parts:
            return np.zeros((n_groups, n))
        home, start, end, kw = (np.concatenate(x) for x in zip(*self.parts[kind], strict=True))
        s = np.clip(start, 0, n)
        e = np.clip(end, 0, n)
        keep = e > s
        g = group[home[keep]]
        w = kw[keep]
        diff = np.bincount(g * (n + 1) + s[keep], weights=w, minlength=n_groups * (n + 1))
        diff -= np.bincount(g * (n + 1) + e[keep], weights=w, minlength=n_groups * (n + 1))
        return np.cumsum(diff.reshape(n_groups, n + 1)[:, :n], axis=1)


def _minute_weights(hourly: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Hourly weights to 1440 per-minute weights, linearly interpolated between hour midpoints."""
    hw = np.asarray(hourly, dtype=float)
    x = (np.arange(DAY_MIN) + 0.5) / 60.0
    return np.interp(x, np.arange(24) + 0.5, hw, period=24)


def _darkness(d: date) -> np.ndarray:
    rise, sett = sun_times_h(d)
    x = (np.arange(DAY_MIN) + 0.5) / 60.0
    # indoor light needed from ~40 min before sunset to ~20 min after sunrise, smooth edges
    evening = 1 / (1 + np.exp(-(x - (sett - 0.7)) * 4))
    morning = 1 / (1 + np.exp((x - (rise + 0.3)) * 4))
    return np.clip(evening + morning, 0.02, 1.0)


def _sample_minutes(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(size), side="right")


class HouseholdModel:
    """Draws homes once; `simulate` produces their load on any axis."""

    def __init__(self, params: HouseholdParams, rng: np.random.Generator) -> None:
        if params.season not in CLIMATES:
            raise ValueError(f"unknown season {params.season!r}; one of {', '.join(SEASONS)}")
        self.params = params
        self.rng = rng
        self.homes = draw_homes(params, rng)
        self.weather_seed = int(rng.integers(2**62))  # the weather has its own stream
        # per appliance: which homes own one, and its power in each home
        self.owned: dict[str, tuple[np.ndarray, np.ndarray]] = {
            a.name: (rng.random(params.n) < a.ownership, rng.uniform(*a.power_kw, params.n))
            for a in params.appliances
        }

    def simulate(self, axis: LocalAxis, per_home: bool = False) -> HouseholdLoad:
        if axis.resolution_s != MIN_S:
            raise ValueError("the household model runs at 60 s resolution")
        p, homes = self.params, self.homes
        n = axis.n
        temp = temperature_c(axis, CLIMATES[p.season], np.random.default_rng(self.weather_seed))
        ev = _Events()
        all_homes = np.arange(p.n)
        always_kw = homes.standby_kw.copy()
        if "water_heater" in self.owned:
            always_kw += p.water_heater_standing_kw * self.owned["water_heater"][0]
        ev.add("plain", all_homes, np.zeros(p.n, dtype=np.int64), np.full(p.n, n), always_kw)
        self._fridges(ev, n)
        dates = axis.dates()
        day_temp = self._daily_temperature(axis, temp)
        for k in range(-1, len(dates)):
            d = dates[0].fromordinal(dates[0].toordinal() + k)
            wk = d.weekday() >= 5
            t_mid = (axis.midnight_offset_s(k)) // MIN_S  # interval index of this local midnight
            self._appliances(ev, d, wk, t_mid)
            tmax, tmin, tmean = day_temp[min(max(k, 0), len(dates) - 1)]
            if p.season == "summer":
                self._air_conditioning(ev, d, wk, t_mid, tmax, tmin)
            if p.heating.share > 0 and p.season == "winter":
                self._heating(ev, wk, t_mid, tmean)
        group = homes.phase if not per_home else all_homes
        n_groups = 3 if not per_home else p.n
        load = ev.integrate("plain", group, n_groups, n)
        load += ev.integrate("ac", group, n_groups, n) * ac_fraction(temp)[None, :]
        load += ev.integrate("heat_pump", group, n_groups, n) * heat_pump_fraction(temp)[None, :]
        if per_home:
            per_phase = np.stack([load[homes.phase == i].sum(axis=0) for i in range(3)], axis=1)
            return HouseholdLoad(axis, per_phase, temp, homes, per_home_kw=load)
        return HouseholdLoad(axis, load.T.copy(), temp, homes)

    # ---- components ------------------------------------------------------------------
    def _daily_temperature(self, axis: LocalAxis, temp: np.ndarray) -> list[tuple[float, float, float]]:
        day = axis.day_index()
        out = []
        for k in range(len(axis.dates())):
            t = temp[day == k]
            out.append((float(t.max()), float(t.min()), float(t.mean())))
        return out

    def _fridges(self, ev: _Events, n: int) -> None:
        p, rng = self.params, self.rng
        period = rng.uniform(40, 70, p.n)
        duty = rng.uniform(0.30, 0.45, p.n) + (0.1 if p.season == "summer" else 0.0)
        kw = rng.uniform(*p.fridge_kw, p.n)
        k_max = int(np.ceil(n / 40.0)) + 1
        starts = rng.uniform(0, period)[:, None] + np.arange(-1, k_max)[None, :] * period[:, None]
        ends = starts + (duty * period)[:, None]
        home = np.broadcast_to(np.arange(p.n)[:, None], starts.shape)
        keep = (starts < n) & (ends > 0)
        ev.add("plain", home[keep], np.round(starts[keep]).astype(np.int64),
               np.round(ends[keep]).astype(np.int64), np.broadcast_to(kw[:, None], starts.shape)[keep])

    def _appliances(self, ev: _Events, d: date, weekend: bool, t_mid: int) -> None:
        p, homes, rng = self.params, self.homes, self.rng
        dark = _darkness(d)
        for a in p.appliances:
            if p.season not in a.seasons:
                continue
            own, kw = self.owned[a.name]
            rate = a.events_per_day * (a.weekend_factor if weekend else 1.0) * homes.activity * own
            if p.season == "winter":
                rate = rate * a.winter_rate_factor
            count = rng.poisson(rate)
            home = np.repeat(np.arange(p.n), count)
            if home.size == 0:
                continue
            start = np.empty(home.size, dtype=np.int64)
            habit = _minute_weights(a.habit) * (dark if a.dark else 1.0)
            for lifestyle, mask in (("home", homes.home_daytime[home]), ("worker", ~homes.home_daytime[home])):
                w = _minute_weights(ACTIVITY[(lifestyle, weekend)]) * habit
                start[mask] = _sample_minutes(w, int(mask.sum()), rng)
            factor = a.winter_duration_factor if p.season == "winter" else 1.0
            dur = np.maximum(1, np.round(rng.lognormal(np.log(a.duration_min[0] * factor), a.duration_min[1],
                                                       home.size))).astype(np.int64)
            s = t_mid + start
            ev.add("plain", home, s, s + dur, kw[home])

    def _air_conditioning(self, ev: _Events, d: date, weekend: bool, t_mid: int, tmax: float, tmin: float) -> None:
        """Evening/daytime living-room use when hot, and bedroom units through hot nights (sleep timers)."""
        homes, rng = self.homes, self.rng
        units = homes.ac_units
        hot_day = np.clip((tmax - 25.0) / 8.0, 0.0, 1.2)
        hot_night = np.clip((tmin - 18.0) / 8.0, 0.0, 1.0)
        x = (np.arange(DAY_MIN) + 0.5) / 60.0
        # warm hours of a typical hot day: afternoon and evening
        heat_hours = np.clip(np.sin(np.pi * (x - 9.0) / 15.0), 0.0, None)
        uses = (("day", hot_day * 0.9, 150.0, 0.5), ("night", hot_night * 0.75, 330.0, 0.3))
        for kind, rate, dur_med, dur_sd in uses:
            count = rng.poisson(np.minimum(units, 2) * rate * homes.activity ** 0.5)
            home = np.repeat(np.arange(homes.phase.size), count)
            if home.size == 0:
                continue
            start = np.empty(home.size, dtype=np.int64)
            for lifestyle, mask in (("home", homes.home_daytime[home]), ("worker", ~homes.home_daytime[home])):
                if kind == "day":
                    w = _minute_weights(ACTIVITY[(lifestyle, weekend)]) * heat_hours
                else:
                    w = np.exp(-0.5 * ((x - 22.0) / 0.8) ** 2)
                start[mask] = _sample_minutes(w, int(mask.sum()), rng)
            dur = np.maximum(10, np.round(rng.lognormal(np.log(dur_med), dur_sd, home.size))).astype(np.int64)
            s = t_mid + start
            ev.add("ac", home, s, s + dur, homes.ac_kw[home])

    def _heating(self, ev: _Events, weekend: bool, t_mid: int, tmean: float) -> None:
        homes, rng, h = self.homes, self.rng, self.params.heating
        # heat pumps: run all day; working homes set back 08:30-17:00 on weekdays
        hp = np.flatnonzero(homes.heating == 1)
        if hp.size:
            setback = ~homes.home_daytime[hp] & (not weekend) & (rng.random(hp.size) < 0.5)
            off = np.round(rng.normal(510, 20, hp.size)).astype(np.int64)
            on = np.round(rng.normal(1020, 30, hp.size)).astype(np.int64)
            full = ~setback
            ev.add("heat_pump", hp[full], np.full(full.sum(), t_mid), np.full(full.sum(), t_mid + DAY_MIN),
                   homes.heating_kw[hp[full]])
            sb = hp[setback]
            ev.add("heat_pump", sb, np.full(sb.size, t_mid), t_mid + off[setback], homes.heating_kw[sb])
            ev.add("heat_pump", sb, t_mid + on[setback], np.full(sb.size, t_mid + DAY_MIN), homes.heating_kw[sb])
        # storage heaters: timers switch on at the start of the heating valley, run until charged
        st = np.flatnonzero(homes.heating == 2)
        if st.size:
            need_kwh = homes.storage_kwh_per_k[st] * max(INDOOR_C - tmean, 0.0)
            dur = np.minimum(need_kwh / homes.heating_kw[st] * 60.0, 12 * 60).astype(np.int64)
            s = t_mid + int(h.storage_on_h * 60) + rng.integers(0, 16, st.size)
            ev.add("plain", st, s, s + dur, homes.heating_kw[st])
        # direct heaters: evening and early-morning use
        di = np.flatnonzero(homes.heating == 3)
        if di.size:
            cold = np.clip((10.0 - tmean) / 10.0, 0.2, 1.5)
            for centre, med in ((18.5, 240.0), (6.0, 90.0)):
                count = rng.poisson(np.full(di.size, cold))
                home = np.repeat(di, count)
                s = t_mid + np.round(rng.normal(centre * 60, 60, home.size)).astype(np.int64)
                dur = np.round(rng.lognormal(np.log(med), 0.4, home.size)).astype(np.int64)
                ev.add("plain", home, s, s + dur, homes.heating_kw[home])


def simulate_households(
    params: HouseholdParams, axis: LocalAxis, rng: np.random.Generator, per_home: bool = False
) -> HouseholdLoad:
    """One call: draw the homes and simulate their load on `axis` (60 s resolution)."""
    return HouseholdModel(params, rng).simulate(axis, per_home=per_home)
