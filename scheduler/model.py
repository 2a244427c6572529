"""The planner's world, as arrays: piles, sessions, limits and the plan.

Everything here is plain data. The daemon builds these from what its drivers read, the
simulator from its physics; the planner and the heuristics take them and return a Plan.
Power in kW (positive = charging/import), energy in kWh, times in epoch seconds (UTC).
Arrays over piles have length n (pile order is fixed per site); arrays over the horizon
have length H.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from youxu.scheduler.thermal import ThermalNow

PHASES = ("L1", "L2", "L3")


def phase_matrix(phases: list[str | None], n_phases: list[int]) -> np.ndarray:
    """(n, 3) share of each pile's power on L1, L2, L3: 1 on its phase, or 1/3 each for 3-phase."""
    m = np.zeros((len(phases), 3))
    for i, (ph, k) in enumerate(zip(phases, n_phases, strict=True)):
        if k == 3 or ph in (None, "3P"):
            m[i, :] = 1.0 / 3.0
        else:
            m[i, PHASES.index(ph)] = 1.0
    return m


@dataclass(frozen=True)
class Piles:
    """Static properties of the site's piles."""

    ids: tuple[str, ...]
    max_kw: np.ndarray  # (n,) most the pile can deliver
    min_kw: np.ndarray  # (n,) smallest non-zero power (6 A); between 0 and this there is nothing
    phase_share: np.ndarray  # (n, 3) share of the pile's power on each phase
    v2g: np.ndarray  # (n,) bool: the pile can discharge
    max_discharge_kw: np.ndarray  # (n,) >= 0

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Sessions:
    """The session on each pile now (aligned with Piles; inactive where no car is plugged in)."""

    active: np.ndarray  # (n,) bool: a car is plugged in and may want energy
    ids: tuple[str | None, ...]
    arrival_s: np.ndarray  # (n,) epoch s
    departure_s: np.ndarray  # (n,) epoch s (declared or assumed)
    energy_requested_kwh: np.ndarray  # (n,)
    energy_delivered_kwh: np.ndarray  # (n,) net energy so far, measured at the pile
    battery_kwh: np.ndarray  # (n,)
    soc_arrival: np.ndarray  # (n,) 0..1
    min_soc: np.ndarray  # (n,) 0..1
    v2g: np.ndarray  # (n,) bool: the driver consents to discharge
    urgent: np.ndarray  # (n,) bool
    car_max_kw: np.ndarray  # (n,) what the car accepts (inf when unknown)

    @property
    def remaining_kwh(self) -> np.ndarray:
        rem = np.maximum(self.energy_requested_kwh - self.energy_delivered_kwh, 0.0)
        return np.where(self.active, rem, 0.0)

    @property
    def soc(self) -> np.ndarray:
        return np.clip(self.soc_arrival + self.energy_delivered_kwh / self.battery_kwh, 0.0, 1.0)

    @staticmethod
    def empty(n: int) -> Sessions:
        z = np.zeros(n)
        return Sessions(
            active=np.zeros(n, dtype=bool),
            ids=(None,) * n,
            arrival_s=z.copy(),
            departure_s=z.copy(),
            energy_requested_kwh=z.copy(),
            energy_delivered_kwh=z.copy(),
            battery_kwh=np.full(n, 60.0),
            soc_arrival=np.full(n, 0.5),
            min_soc=np.full(n, 0.2),
            v2g=np.zeros(n, dtype=bool),
            urgent=np.zeros(n, dtype=bool),
            car_max_kw=np.full(n, np.inf),
        )


@dataclass(frozen=True)
class ExpectedArrivals:
    """The cars still to come, as reserve sessions: one per phase group and hour ahead (`youxu.scheduler.arrivals`)."""

    pile: np.ndarray  # (R,) a pile of the group (stands for its phase share)
    start_s: np.ndarray  # (R,) epoch s
    end_s: np.ndarray  # (R,) epoch s
    energy_kwh: np.ndarray  # (R,)
    max_kw: np.ndarray  # (R,) the expected cars' pile power together
    key: tuple[str, ...]  # stable names (group and hour), for warm starts

    @property
    def n(self) -> int:
        return int(self.pile.size)

    @staticmethod
    def none() -> ExpectedArrivals:
        z = np.zeros(0)
        return ExpectedArrivals(np.zeros(0, dtype=np.int64), z, z, z, z, ())


@dataclass(frozen=True)
class PlanInput:
    """Everything a planning decision may use, over a horizon of H steps starting at t0_s.

    Limits are the tightest in force per step (transformer minus margin, dispatch limits);
    `np.inf` where nothing limits. `setpoint_kw` is NaN where no setpoint command applies.
    """

    t0_s: float
    step_s: np.ndarray  # (H,) duration of each step in s (first steps may be finer)
    base_kw: np.ndarray  # (H,) forecast household (non-EV) load, total
    base_phase_kw: np.ndarray  # (H, 3) forecast household load per phase
    import_limit_kw: np.ndarray  # (H,) site total import cap (transformer - margin, site limits)
    export_limit_kw: np.ndarray  # (H,) site total export cap, >= 0 (site exports at most this)
    phase_limit_kw: np.ndarray | None  # (3,) per-phase import cap, or None
    ev_import_limit_kw: np.ndarray  # (H,) cap on the sum of pile power (ev-scope limits)
    ev_export_limit_kw: np.ndarray  # (H,) cap on the sum of pile discharge, >= 0
    setpoint_kw: np.ndarray  # (H,) target for the EV aggregate (or site total), NaN where none
    setpoint_scope: str  # "ev" or "site"
    import_price: np.ndarray  # (H,) yuan/kWh
    export_price: np.ndarray  # (H,) yuan/kWh
    piles: Piles
    sessions: Sessions
    pile_online: np.ndarray  # (n,) bool: reachable and controllable this tick
    wear_yuan_per_kwh: float = 0.05  # battery wear per discharged kWh (V2G)
    peak_floor_kw: float = 0.0  # highest total load already measured in the past day (the peak to beat)
    base_spread_kw: np.ndarray | None = None  # (H,) how far the household load may run above its forecast
    base_phase_spread_kw: np.ndarray | None = None  # (H, 3) the same per phase
    expected_arrivals: ExpectedArrivals | None = None  # the cars still to come: room the plan keeps for them

    @property
    def horizon(self) -> int:
        return int(self.step_s.size)

    @property
    def step_end_s(self) -> np.ndarray:
        return self.t0_s + np.cumsum(self.step_s)


@dataclass
class Plan:
    """Power per pile per step (kW), and how the plan was made."""

    power_kw: np.ndarray  # (n, H)
    status: str = "ok"  # ok | fallback | infeasible-relaxed | ...
    fallback: bool = False
    build_ms: float = 0.0
    solve_ms: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def first_kw(self) -> np.ndarray:
        return self.power_kw[:, 0]


@dataclass(frozen=True)
class Snapshot:
    """One frozen picture of the site at t_s, read once per tick: everything a decision may use."""

    t_s: float
    meter_kw: float  # measured total import at the transformer (or a held/assumed value)
    meter_phase_kw: np.ndarray | None  # (3,) measured per phase, None when the meter has none
    pile_kw: np.ndarray  # (n,) measured power per pile (last known where offline)
    pile_online: np.ndarray  # (n,) bool: read this tick
    pile_plugged: np.ndarray  # (n,) bool: a car is connected
    sessions: Sessions
    meter_ok: bool = True
    fixed_kw: np.ndarray | None = None  # (n,) NaN where controllable; else the power assumed for that pile
    thermal: ThermalNow | None = None  # the transformer's thermal state, where the site models it

    @property
    def base_kw(self) -> float:
        """Household (non-EV) load: meter minus what the piles draw."""
        return self.meter_kw - float(self.pile_kw.sum())

    @property
    def assumed_kw(self) -> np.ndarray:
        """(n,) power assumed for the piles we cannot steer this tick, 0 for the others."""
        n = self.pile_kw.size
        return np.zeros(n) if self.fixed_kw is None else np.nan_to_num(self.fixed_kw, nan=0.0)

    @property
    def controllable(self) -> np.ndarray:
        """(n,) bool: read this tick and following its setpoints."""
        return self.pile_online if self.fixed_kw is None else self.pile_online & np.isnan(self.fixed_kw)

    def base_phase_kw(self, phase_share: np.ndarray) -> np.ndarray:
        if self.meter_phase_kw is None:
            return np.full(3, self.base_kw / 3.0)
        return self.meter_phase_kw - self.pile_kw @ phase_share


@dataclass(frozen=True)
class HardLimits:
    """The limits in force now, which the safety layer holds whatever the planner says."""

    import_kw: float  # site total import cap (transformer - margin, site-scope dispatch limits)
    export_kw: float  # site total export cap, >= 0
    phase_kw: np.ndarray | None  # (3,) per-phase import cap
    ev_import_kw: float = np.inf  # cap on the sum of pile power
    ev_export_kw: float = np.inf  # cap on the sum of pile discharge, >= 0


@dataclass(frozen=True)
class DispatchLimits:
    """Dispatch commands in force at each time of a horizon (arrays over t)."""

    site_import_max_kw: np.ndarray  # inf where no site-scope import limit
    site_export_max_kw: np.ndarray  # inf where no site-scope export limit (>= 0)
    ev_import_max_kw: np.ndarray  # inf where no ev-scope import limit
    ev_export_max_kw: np.ndarray  # inf where no ev-scope export limit (>= 0)
    setpoint_kw: np.ndarray  # NaN where no setpoint command applies
    setpoint_scope: str = "ev"  # scope of the winning setpoint
    active_command_ids: tuple[str, ...] = ()

    @staticmethod
    def none(n: int) -> DispatchLimits:
        inf = np.full(n, np.inf)
        return DispatchLimits(inf, inf.copy(), inf.copy(), inf.copy(), np.full(n, np.nan))
