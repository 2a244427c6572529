"""Electric cars of a residential community, their piles and their charging sessions.

Every home draws up to three potential cars once (class, battery, on-board charger, driver
profile, plug-in habit, V2G consent); a car exists when its adoption draw is below the EV
penetration, so raising the penetration only adds cars (hosting-capacity studies keep
everything else fixed). Cars leave in the morning and come home in the evening by local
time; their state of charge falls with the distance driven and rises when they plug in.
Private piles serve one car; shared piles serve whoever comes first, one car at a time.
Figures and their sources: sim/PARAMETERS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from youxu.sim.tou import DAY_S, LocalAxis

V_PHASE = 230.0
MIN_A = 6.0


@dataclass(frozen=True)
class CarClass:
    name: str
    share: float
    battery_kwh: tuple[float, float]
    kwh_per_km: tuple[float, float]
    obc_kw: tuple[tuple[float, float], ...]  # (on-board charger kW, probability)
    dc_p: float  # has a DC inlet
    v2g_p: float  # V2G-capable


CAR_CLASSES: tuple[CarClass, ...] = (
    CarClass("mini", 0.12, (13.0, 30.0), (0.09, 0.12), ((3.3, 1.0),), 0.1, 0.0),
    CarClass("phev", 0.30, (18.0, 40.0), (0.16, 0.22), ((3.3, 0.3), (6.6, 0.7)), 0.5, 0.0),
    CarClass("compact", 0.28, (38.0, 55.0), (0.12, 0.15), ((6.6, 0.8), (7.0, 0.2)), 1.0, 0.15),
    CarClass("midsize", 0.22, (60.0, 80.0), (0.13, 0.17), ((6.6, 0.3), (7.0, 0.4), (11.0, 0.3)), 1.0, 0.25),
    CarClass("large", 0.08, (80.0, 100.0), (0.17, 0.21), ((7.0, 0.4), (11.0, 0.6)), 1.0, 0.20),
)


@dataclass(frozen=True)
class Trip:
    """A driver profile: local hours (mean, sd, lo, hi) of leaving and coming home, daily km (median, sigma)."""

    share: float
    depart_h: tuple[float, float, float, float]
    arrive_h: tuple[float, float, float, float]
    km: tuple[float, float]


DRIVERS: dict[str, Trip] = {  # weekdays
    "commuter": Trip(0.68, (7.8, 0.6, 6.0, 10.0), (19.0, 1.0, 16.5, 23.5), (35.0, 0.5)),
    "local": Trip(0.22, (9.5, 1.2, 6.5, 13.0), (15.5, 2.0, 10.5, 22.0), (15.0, 0.6)),
    "late": Trip(0.10, (10.0, 1.0, 8.0, 13.0), (23.0, 1.0, 21.0, 26.5), (60.0, 0.5)),
}
WEEKEND = Trip(1.0, (10.0, 1.8, 7.0, 15.0), (17.5, 2.5, 11.0, 23.5), (25.0, 0.9))


@dataclass(frozen=True)
class PileType:
    name: str
    max_kw: float
    min_kw: float
    phases: int
    dc: bool = False
    max_discharge_kw: float = 0.0


AC7 = PileType("ac7", 7.0, round(MIN_A * V_PHASE / 1000, 2), 1)  # 32 A single phase, 6 A = 1.38 kW
AC11 = PileType("ac11", 11.0, round(3 * MIN_A * V_PHASE / 1000, 2), 3)  # 16 A three phase, 6 A = 4.14 kW
V2G10 = PileType("v2g-dc10", 10.0, 1.5, 3, dc=True, max_discharge_kw=10.0)  # bidirectional DC wallbox
DC_SHARED: tuple[tuple[PileType, float], ...] = (
    (PileType("dc20", 20.0, 2.0, 3, dc=True), 0.5),
    (PileType("dc30", 30.0, 2.0, 3, dc=True), 0.3),
    (PileType("dc40", 40.0, 2.0, 3, dc=True), 0.2),
)


@dataclass(frozen=True)
class EvParams:
    penetration: float = 0.2  # cars per home (0..3)
    private_spot_share: float = 0.6  # of cars: owner has a fixed parking space with a private pile
    shared_dc_share: float = 0.3  # of shared piles: 20-40 kW DC
    shared_ac11_share: float = 0.1  # of shared piles: 11 kW three-phase (the rest 7 kW AC)
    shared_v2g_share: float = 0.25  # of shared DC piles: bidirectional
    private_ac11_share: float = 0.5  # of private piles whose car takes 11 kW
    v2g_consent: float = 0.5  # of V2G-capable cars
    v2g_pile_share: float = 0.6  # of consenting private owners: installed a bidirectional pile
    daily_plug_share: float = 0.45  # plug in every evening; the others when the battery gets low
    daily_plug_p: float = 0.9
    threshold_soc: tuple[float, float] = (0.3, 0.6)
    opportunistic_p: float = 0.12  # a low-habit driver plugs in anyway
    weekend_plug_factor: float = 0.8
    target_soc: tuple[tuple[float, float], ...] = ((1.0, 0.6), (0.9, 0.3), (0.8, 0.1))
    min_soc: tuple[float, float] = (0.3, 0.6)  # V2G owners' floor
    urgent_share: float = 0.03
    undeliverable_share: float = 0.02  # requests above what the window can deliver, kept on purpose
    urgent_overask_share: float = 0.5  # of urgent drivers: ask for the full battery whatever the time
    shared_mover_share: float = 0.7  # shared-pile users who move the car when charged
    shared_wait_s: int = 5400  # how long a shared-pile user waits for a pile to free up
    phase_cycle: tuple[str, ...] = ("L1", "L2", "L3")  # single-phase piles are wired in this rotation
    season_consumption: dict[str, float] = field(
        default_factory=lambda: {"winter": 1.35, "summer": 1.1, "shoulder": 1.0}
    )  # kWh/km relative to mild weather


MAX_CARS_PER_HOME = 3


@dataclass
class Fleet:
    """Up to three potential cars per home; `owned(penetration)` selects the cars that exist."""

    home: np.ndarray  # home of each potential car
    slot: np.ndarray  # 0 = the home's first car, 1 = second, 2 = third
    adopt_u: np.ndarray
    car_class: np.ndarray
    battery_kwh: np.ndarray
    kwh_per_km: np.ndarray
    obc_kw: np.ndarray
    dc: np.ndarray
    v2g: np.ndarray  # capable and consenting
    driver: np.ndarray  # index into DRIVERS
    daily_plug: np.ndarray
    threshold_soc: np.ndarray
    target_soc: np.ndarray
    min_soc: np.ndarray
    private_spot: np.ndarray
    soc0: np.ndarray

    def owned(self, penetration: float) -> np.ndarray:
        """Indices of the cars that exist at `penetration` cars per home, earliest adopters first.

        A home's first car exists when its draw is below the penetration, its second when its
        draw is below the penetration minus one, and so on: more penetration only adds cars.
        """
        if not 0.0 <= penetration <= MAX_CARS_PER_HOME:
            raise ValueError(f"EV penetration {penetration} is outside 0..{MAX_CARS_PER_HOME} cars per home")
        idx = np.flatnonzero(self.adopt_u < np.clip(penetration - self.slot, 0.0, 1.0))
        return idx[np.argsort(self.slot[idx] + self.adopt_u[idx], kind="stable")]


def _choice(rng: np.random.Generator, options: tuple[tuple[float, float], ...], size: int) -> np.ndarray:
    vals = np.array([v for v, _ in options])
    p = np.array([q for _, q in options])
    return vals[rng.choice(len(vals), size=size, p=p / p.sum())]


def draw_fleet(n_homes: int, params: EvParams, rng: np.random.Generator) -> Fleet:
    n = n_homes * MAX_CARS_PER_HOME
    shares = np.array([c.share for c in CAR_CLASSES])
    cls = rng.choice(len(CAR_CLASSES), size=n, p=shares / shares.sum())
    battery = np.empty(n)
    per_km = np.empty(n)
    obc = np.empty(n)
    dc = np.empty(n, dtype=bool)
    capable = np.empty(n, dtype=bool)
    for i, c in enumerate(CAR_CLASSES):
        sel = cls == i
        k = int(sel.sum())
        battery[sel] = np.round(rng.uniform(*c.battery_kwh, k), 1)
        per_km[sel] = rng.uniform(*c.kwh_per_km, k)
        obc[sel] = _choice(rng, c.obc_kw, k)
        dc[sel] = rng.random(k) < c.dc_p
        capable[sel] = rng.random(k) < c.v2g_p
    d_shares = np.array([t.share for t in DRIVERS.values()])
    return Fleet(
        home=np.arange(n) // MAX_CARS_PER_HOME,
        slot=np.arange(n) % MAX_CARS_PER_HOME,
        adopt_u=rng.random(n),
        car_class=cls,
        battery_kwh=battery,
        kwh_per_km=per_km,
        obc_kw=obc,
        dc=dc,
        v2g=capable & (rng.random(n) < params.v2g_consent),
        driver=rng.choice(len(DRIVERS), size=n, p=d_shares / d_shares.sum()),
        daily_plug=(rng.random(n) < params.daily_plug_share) | (cls == 1),  # PHEVs plug in daily
        threshold_soc=rng.uniform(*params.threshold_soc, n),
        target_soc=_choice(rng, params.target_soc, n),
        min_soc=np.round(rng.uniform(*params.min_soc, n), 2),
        private_spot=rng.random(n) < params.private_spot_share,
        soc0=rng.uniform(0.4, 0.9, n),
    )


# ---- piles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pile:
    id: str
    kind: PileType
    phase: str | None
    private: bool
    owner: int | None = None  # index of the car it belongs to

    def to_scenario(self) -> dict:
        k = self.kind
        return {
            "id": self.id,
            "max_kw": k.max_kw,
            "min_kw": k.min_kw,
            "phases": k.phases,
            "phase": self.phase if k.phases == 1 else None,
            "v2g": k.max_discharge_kw > 0,
            "max_discharge_kw": k.max_discharge_kw,
        }


@dataclass
class Community:
    piles: list[Pile]
    cars: np.ndarray  # indices of existing cars
    private_pile: dict[int, int] = field(default_factory=dict)  # car -> pile index
    shared_users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def build_piles(fleet: Fleet, cars: np.ndarray, n_piles: int | None, params: EvParams,
                rng: np.random.Generator, evs_per_shared_pile: float = 2.5) -> Community:
    """Piles for the cars: a private pile per car with a parking space (while piles last), the rest shared.

    With `n_piles` None the pile count follows the fleet: one per private car plus one shared
    pile per `evs_per_shared_pile` other cars.
    """
    private_cars = cars[fleet.private_spot[cars]]
    if n_piles is None:
        n_other = cars.size - private_cars.size
        n_piles = private_cars.size + int(np.ceil(n_other / evs_per_shared_pile))
    private_cars = private_cars[: n_piles]
    n_shared = n_piles - private_cars.size
    u = rng.random((n_piles, 3))  # one row per pile position: stable as the fleet grows
    piles: list[Pile] = []
    private_pile: dict[int, int] = {}
    phase_i = 0

    def next_phase() -> str:
        nonlocal phase_i
        ph = params.phase_cycle[phase_i % len(params.phase_cycle)]
        phase_i += 1
        return ph

    for i, car in enumerate(private_cars):
        if fleet.v2g[car] and fleet.dc[car] and u[i, 0] < params.v2g_pile_share:
            kind = V2G10
        elif fleet.obc_kw[car] >= 11.0 and u[i, 1] < params.private_ac11_share:
            kind = AC11
        else:
            kind = AC7
        private_pile[int(car)] = len(piles)
        piles.append(Pile("", kind, next_phase() if kind.phases == 1 else None, True, int(car)))
    for j in range(n_shared):
        r = u[private_cars.size + j]
        if r[0] < params.shared_dc_share:
            kind = _pick_dc(r[1])
            if r[2] < params.shared_v2g_share:
                kind = PileType(kind.name + "-v2g", kind.max_kw, kind.min_kw, 3, True, kind.max_kw)
        elif r[0] < params.shared_dc_share + params.shared_ac11_share:
            kind = AC11
        else:
            kind = AC7
        piles.append(Pile("", kind, next_phase() if kind.phases == 1 else None, False))
    width = max(3, len(str(len(piles))))
    piles = [Pile(f"P{i + 1:0{width}d}", p.kind, p.phase, p.private, p.owner) for i, p in enumerate(piles)]
    shared_users = np.array([c for c in cars if int(c) not in private_pile], dtype=np.int64)
    return Community(piles, cars, private_pile, shared_users)


def _pick_dc(u: float) -> PileType:
    acc = 0.0
    for kind, p in DC_SHARED:
        acc += p
        if u < acc:
            return kind
    return DC_SHARED[-1][0]


# ---- sessions ------------------------------------------------------------------------


@dataclass
class Session:
    pile: int
    car: int
    arrival_s: int
    departure_s: int
    energy_kwh: float
    battery_kwh: float
    soc_arrival: float
    v2g: bool
    min_soc: float
    urgent: bool
    car_max_kw: float | None  # on-board charger, when below the pile

    def to_scenario(self, session_id: str, pile_id: str) -> dict:
        soc = round(self.soc_arrival, 3)
        energy = min(round(self.energy_kwh, 2), np.floor((1.0 - soc) * self.battery_kwh * 100) / 100)
        out = {
            "id": session_id,
            "pile": pile_id,
            "arrival_s": self.arrival_s,
            "departure_s": self.departure_s,
            "energy_kwh": float(energy),
            "battery_kwh": self.battery_kwh,
            "soc_arrival": soc,
            "v2g": self.v2g,
            "min_soc": self.min_soc,
            "priority": "urgent" if self.urgent else "normal",
        }
        if self.car_max_kw is not None:
            out["max_kw"] = self.car_max_kw
        return out


def _hours(rng: np.random.Generator, spec: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Normal local hours truncated to [lo, hi] by redrawing."""
    mean, sd, lo, hi = spec
    x = rng.normal(mean, sd, size)
    for _ in range(6):
        bad = (x < lo) | (x > hi)
        if not bad.any():
            break
        x[bad] = rng.normal(mean, sd, int(bad.sum()))
    return np.clip(x, lo, hi)


def _car_kw(kind: PileType, obc_kw: float) -> float | None:
    """What the car accepts on this pile, when it is below the pile's rating (AC only: DC bypasses the OBC)."""
    if kind.dc or obc_kw >= kind.max_kw:
        return None
    return obc_kw


class SessionModel:
    """Day-by-day trips, state of charge and plug-in decisions of the community's cars."""

    def __init__(self, fleet: Fleet, community: Community, params: EvParams, rng: np.random.Generator) -> None:
        self.fleet, self.community, self.params, self.rng = fleet, community, params, rng
        piles = community.piles
        self.pile_arrays = {
            "dc": np.array([p.kind.dc for p in piles], dtype=bool),
            "max_kw": np.array([p.kind.max_kw for p in piles], dtype=float),
            "min_kw": np.array([p.kind.min_kw for p in piles], dtype=float),
            "shared": np.array([not p.private for p in piles], dtype=bool),
        }

    def simulate(self, axis: LocalAxis, season: str = "shoulder") -> list[Session]:
        """Sessions on `axis`; `season` scales consumption per km (cabin heating, air conditioning)."""
        f, c, p, rng = self.fleet, self.community, self.params, self.rng
        per_km = f.kwh_per_km[c.cars] * p.season_consumption.get(season, 1.0)
        cars = c.cars
        sessions: list[Session] = []
        if cars.size == 0:
            return sessions
        soc = f.soc0[cars].copy()
        prev_dep_s = np.full(cars.size, np.iinfo(np.int64).min // 2, dtype=np.int64)
        shared_free_s = np.full(len(c.piles), -np.inf)  # when each shared pile is free again
        drivers = list(DRIVERS.values())
        dates = axis.dates()
        base = dates[0].toordinal()
        for k in range(-1, len(dates)):
            wk_today = dates[0].fromordinal(base + k).weekday() >= 5
            wk_next = dates[0].fromordinal(base + k + 1).weekday() >= 5
            # draws for every potential car, so that each car's behaviour does not depend on the fleet size
            n_all = f.adopt_u.size
            arr_h = np.empty(n_all)
            dep_h = np.empty(n_all)
            km = np.empty(n_all)
            for d_i, trip in enumerate(drivers):
                sel = f.driver == d_i
                today = WEEKEND if wk_today else trip
                arr_h[sel] = _hours(rng, today.arrive_h, int(sel.sum()))
                dep_h[sel] = _hours(rng, (WEEKEND if wk_next else trip).depart_h, int(sel.sum()))
                km[sel] = rng.lognormal(np.log(today.km[0]), today.km[1], int(sel.sum()))
            u = rng.random((7, n_all))[:, cars]
            topup = rng.uniform(0.4, 0.7, n_all)[cars]
            urgent_h = rng.uniform(1.5, 4.0, n_all)[cars]
            away_h = rng.uniform(1.0, 4.0, n_all)[cars]
            arr_h, dep_h, km = arr_h[cars], dep_h[cars], km[cars]
            midnight = axis.midnight_offset_s(k)
            arr_s = (midnight + np.round(arr_h * 60) * 60).astype(np.int64)
            # a car is away for at least an hour or more after leaving in the morning
            arr_s = np.maximum(arr_s, prev_dep_s + np.round(away_h * 60) * 60).astype(np.int64)
            dep_s = (midnight + DAY_S + np.round(dep_h * 60) * 60).astype(np.int64)
            prev_dep_s = dep_s.copy()
            soc = soc - km * per_km / f.battery_kwh[cars]
            low = soc < 0.08  # would have run flat: topped up at a public station on the way
            soc = np.clip(np.where(low, soc + topup, soc), 0.05, 1.0)
            plug_p = np.where(f.daily_plug[cars], p.daily_plug_p,
                              np.where(soc < f.threshold_soc[cars], 0.95, p.opportunistic_p))
            if wk_today:
                plug_p = plug_p * p.weekend_plug_factor
            energy = np.maximum(f.target_soc[cars] - soc, 0.0) * f.battery_kwh[cars]
            plug = (u[0] < plug_p) & (energy >= 1.0) & (dep_s - arr_s >= 1800)
            urgent = u[1] < p.urgent_share
            dep_s = np.where(urgent, arr_s + np.round(urgent_h * 60) * 60, dep_s).astype(np.int64)
            keep_over = (u[2] < p.undeliverable_share) | (urgent & (u[6] < p.urgent_overask_share))
            mover = u[3] < p.shared_mover_share
            busy_factor = 1.05 + 0.25 * u[4]
            busy_extra_s = 600 + 1800 * u[5]
            n = cars.size
            order = np.argsort(arr_s, kind="stable")
            delivered = np.zeros(n)
            for i in order:
                if not plug[i]:
                    continue
                car = int(cars[i])
                if car in c.private_pile:
                    pile_i = c.private_pile[car]
                    start_s, end_s = int(arr_s[i]), int(dep_s[i])
                else:
                    got = self._shared_slot(car, int(arr_s[i]), int(dep_s[i]), shared_free_s)
                    if got is None:
                        continue
                    pile_i, start_s = got
                    kw = self._kw(pile_i, car)
                    end_s = int(dep_s[i])
                    if mover[i] and not urgent[i]:
                        busy_s = energy[i] / kw * 3600 * busy_factor[i] + busy_extra_s[i]
                        end_s = min(end_s, start_s + int(np.ceil(busy_s / 60)) * 60)
                    shared_free_s[pile_i] = end_s + 60
                kind = c.piles[pile_i].kind
                deliverable = self._kw(pile_i, car) * (end_s - start_s) / 3600 * 0.95
                # a few drivers ask for more than the window can deliver (kept on purpose, rare)
                e = float(energy[i]) if keep_over[i] else min(float(energy[i]), deliverable)
                if e < 0.5:
                    continue
                v2g = bool(f.v2g[car] and kind.max_discharge_kw > 0)
                sessions.append(Session(
                    pile=pile_i, car=car, arrival_s=start_s, departure_s=end_s, energy_kwh=e,
                    battery_kwh=float(f.battery_kwh[car]), soc_arrival=float(soc[i]), v2g=v2g,
                    min_soc=float(f.min_soc[car]) if v2g else round(min(0.2, float(soc[i])), 3),
                    urgent=bool(urgent[i]), car_max_kw=_car_kw(kind, float(f.obc_kw[car])),
                ))
                delivered[i] = min(e, deliverable)
            soc = np.clip(soc + delivered / f.battery_kwh[cars], 0.0, 1.0)
        return _fit_window(sessions, axis.duration_s, self)

    def _kw(self, pile_i: int, car: int) -> float:
        kind = self.community.piles[pile_i].kind
        car_kw = _car_kw(kind, float(self.fleet.obc_kw[car]))
        return kind.max_kw if car_kw is None else car_kw

    def _shared_slot(self, car: int, arr_s: int, dep_s: int, free_s: np.ndarray) -> tuple[int, int] | None:
        """The shared pile this car gets: the earliest free within the waiting time, the fastest on a tie.

        `free_s` holds, per pile, when it is free again (-inf for private piles, which are never offered).
        """
        k = self.pile_arrays
        car_kw = np.where(k["dc"], k["max_kw"], np.minimum(k["max_kw"], self.fleet.obc_kw[car]))
        usable = k["shared"] & np.where(k["dc"], bool(self.fleet.dc[car]), car_kw >= k["min_kw"])
        start = np.maximum(float(arr_s), free_s)
        ok = usable & (start <= arr_s + self.params.shared_wait_s) & (start <= dep_s - 1800)
        if not ok.any():
            return None
        idx = np.flatnonzero(ok)
        best = idx[np.lexsort((idx, -car_kw[idx], start[idx]))[0]]
        return int(best), int(np.ceil(start[best] / 60) * 60)


def _fit_window(sessions: list[Session], duration_s: int, model: SessionModel) -> list[Session]:
    """Keep what falls in [0, duration_s]: a car plugged in before the start has charged meanwhile
    (at full power); one leaving after the end asks for the share of its energy due in the window."""
    out = []
    for s in sessions:
        if s.departure_s <= 0 or s.arrival_s >= duration_s:
            continue
        kw = model._kw(s.pile, s.car)
        if s.arrival_s < 0:
            done = min(s.energy_kwh, kw * (-s.arrival_s) / 3600)
            s.energy_kwh -= done
            s.soc_arrival = min(1.0, s.soc_arrival + done / s.battery_kwh)
            s.arrival_s = 0
        if s.departure_s > duration_s:
            full = s.departure_s - s.arrival_s
            s.energy_kwh *= (duration_s - s.arrival_s) / full
            s.departure_s = duration_s
        if s.energy_kwh < 0.2 or s.departure_s - s.arrival_s < 300:
            continue
        out.append(s)
    out.sort(key=lambda s: (s.arrival_s, s.pile))
    return out
