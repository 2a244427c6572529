"""The charging LP's inputs and output as plain arrays (see `youxu.scheduler.lp_build` for the LP itself)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LpWeights:
    """Objective weights, in yuan per unit; their order encodes the planner's priorities."""

    overflow_per_kwh: float = 1.0e5  # a hard limit the EVs cannot keep (household load alone is too high)
    unmet_urgent_per_kwh: float = 3.0e4
    unmet_per_kwh: float = 1.0e4
    # energy of the cars still to come (reserve sessions): below every real car's and the forecast band's, above
    # every price and the peak, so the plan keeps room for them but never at a real car's cost
    reserve_unmet_per_kwh: float = 1.0e3
    urgent_early_per_kwh: float = 2.0e3  # reward for urgent energy delivered in its full-power prefix
    band_per_kwh: float = 2.0e3  # import a household-load forecast error could push over the limit
    setpoint_per_kwh: float = 1.0e3  # deviation from a dispatch setpoint
    peak_per_kw: float = 20.0  # the horizon's peak of the total transformer load
    valley_per_kwh: float = 0.4  # spread of the convex cost on total load (flattens it)
    valley_segments: int = 12
    fairness: float = 50.0  # per unit of the largest unmet fraction (per urgency class)
    # energy planned into the last minutes before a car leaves (`LpSessions.tail_s`): below the cars still to come,
    # above every price and the peak, so a plan finishes early where it can and keeps the end to make up a shortfall
    tail_per_kwh: float = 300.0
    delay_per_kwh_h: float = 0.0  # per kWh per hour it is charged later (cars yet to come may need the room)
    delay_cap_h: float = 1.0  # ... up to this many hours: below any price step of the tariff


@dataclass(frozen=True)
class LpGrid:
    """The site over the horizon: H steps of `step_h` hours."""

    step_h: np.ndarray  # (H,)
    base_kw: np.ndarray  # (H,) household load, total
    base_phase_kw: np.ndarray  # (H, 3)
    import_limit_kw: np.ndarray  # (H,) site import cap (inf where none)
    export_limit_kw: np.ndarray  # (H,) site export cap >= 0
    phase_limit_kw: np.ndarray | None  # (3,) or (H, 3), or None
    ev_import_limit_kw: np.ndarray  # (H,)
    ev_export_limit_kw: np.ndarray  # (H,) >= 0
    setpoint_kw: np.ndarray  # (H,) NaN where none
    setpoint_scope: str  # "ev" or "site"
    import_price: np.ndarray  # (H,) yuan/kWh
    export_price: np.ndarray  # (H,)
    phase_share: np.ndarray  # (n_piles, 3)
    wear_yuan_per_kwh: float = 0.05
    step_key: np.ndarray | None = None  # (H,) stable id of each step across solves (e.g. its end time, s)
    peak_base_kw: np.ndarray | None = None  # (H,) household load at its highest within each step (coarse steps)
    peak_floor_kw: float = 0.0  # the peak already reached today: going up to it costs nothing more
    import_band_kw: np.ndarray | None = None  # (H,) the top of the import room a forecast error may take
    phase_band_kw: np.ndarray | None = None  # (H, 3) the same for each phase's headroom

    @property
    def horizon(self) -> int:
        return int(self.step_h.size)


@dataclass(frozen=True)
class LpSessions:
    """K sessions with their windows on the grid's steps."""

    pile: np.ndarray  # (K,) int, row of LpGrid.phase_share
    start_step: np.ndarray  # (K,) int, first step with power
    end_step: np.ndarray  # (K,) int, exclusive
    first_frac: np.ndarray  # (K,) share of the first step the car is there (arrival inside the step)
    last_frac: np.ndarray  # (K,) share of the last step the car is there (departure inside the step)
    max_kw: np.ndarray  # (K,) pile and car limit
    discharge_kw: np.ndarray  # (K,) > 0 only where pile and driver consent to V2G
    target_kwh: np.ndarray  # (K,) energy wanted by the end of the window (soft)
    cap_kwh: np.ndarray  # (K,) most net energy the window may take (>= target)
    urgent: np.ndarray  # (K,) bool
    battery_now_kwh: np.ndarray  # (K,) energy in the battery at the window start
    battery_min_kwh: np.ndarray  # (K,) floor for V2G (min_soc * capacity)
    battery_max_kwh: np.ndarray  # (K,) capacity
    uid: np.ndarray | None = None  # (K,) stable id of each session across solves (< 2**24)
    # count a session in the site's rows at the power it draws while plugged in (x / availability), not its
    # step average: steps coarser than the real ones (the offline yardstick's blocks) then never overfill
    # any real step inside them when a car arrives or leaves within a step
    peak_coupling: bool = False
    # the same for cars that are there from the start of the horizon and leave inside a step (the rolling
    # planner): the site's rows get the difference for those steps only, a few entries per session
    departure_coupling: bool = False
    reserve: np.ndarray | None = None  # (K,) bool: an expected session of cars still to come, not a real car
    tail_s: np.ndarray | None = None  # (K,) the end of the window (s) kept as a margin (priced `tail_per_kwh`)

    @property
    def is_reserve(self) -> np.ndarray:
        return np.zeros(self.k, dtype=bool) if self.reserve is None else np.asarray(self.reserve, dtype=bool)

    @property
    def k(self) -> int:
        return int(self.pile.size)


@dataclass
class LpProblem:
    """A built LP: bounds, costs and a CSR constraint matrix, plus where each block lives."""

    c: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    a_data: np.ndarray
    a_indices: np.ndarray
    a_indptr: np.ndarray
    x_session: np.ndarray  # session of each x column
    x_step: np.ndarray  # step of each x column
    x_frac: np.ndarray  # share of its step the car is plugged in (x is the step's average power)
    target_kwh: np.ndarray  # (K,) energy row lower bounds
    y_pos: np.ndarray  # index into x of each y column (the same session-step)
    col_key: np.ndarray  # (n_cols,) int64 stable identity of each column (warm starts map bases by it)
    row_key: np.ndarray  # (n_rows,) int64
    step_key: np.ndarray  # (H,) int64, the grid's step keys in order
    col: dict[str, slice]
    n_sessions: int
    horizon: int

    @property
    def n_cols(self) -> int:
        return int(self.c.size)

    @property
    def n_rows(self) -> int:
        return int(self.row_lb.size)
