"""One decision: snapshot -> plan -> setpoints -> safety. Pure; shared by daemon and simulator.

The daemon calls `Controller.decide` once per fast-loop tick with the snapshot its drivers
read; `youxu sim run` calls it once per step with a snapshot of the simulated site. What the
simulator measures is therefore what the daemon does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from youxu.scheduler import heuristics, safety
from youxu.scheduler.forecast import BaseLoadForecaster
from youxu.scheduler.model import DispatchLimits, HardLimits, Piles, Plan, PlanInput, Snapshot
from youxu.scheduler.thermal import ThermalNow, ThermalSite

TariffFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # epoch s -> (import, export) yuan/kWh
DispatchFn = Callable[[np.ndarray], DispatchLimits]

STRATEGIES = ("uncontrolled", "fairshare", "edf", "llf", "mpc")


class Planner(Protocol):
    """A planner over a horizon (`scheduler.rolling.RollingPlanner`): setpoints for this tick from its plan."""

    forecaster: BaseLoadForecaster

    def setpoints(self, snap: Snapshot, limits: HardLimits, ctl: Controller) -> tuple[np.ndarray, Plan | None, bool]:
        """(setpoints kW, the plan they come from, whether a new plan was made this tick)."""
        ...

    def invalidate(self) -> None:
        """Forget the plan: the next tick plans anew (after a clock step, say)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SiteLimits:
    """The transformer's own limits (before dispatch)."""

    import_kw: float
    export_kw: float
    phase_kw: np.ndarray | None
    margin_kw: float = 0.0


@dataclass
class Decision:
    setpoints_kw: np.ndarray
    limits: HardLimits
    limit_kw: float  # tightest import limit in force (transformer, its thermal limit, dispatch), without margin
    plan: Plan | None = None
    plan_ms: float = 0.0
    planned: bool = False
    fallback: bool = False
    info: dict = field(default_factory=dict)


class Controller:
    """Turns snapshots into safe setpoints with the chosen strategy."""

    def __init__(self, piles: Piles, site: SiteLimits, strategy: str, tariff: TariffFn,
                 dispatch: DispatchFn | None = None, tick_s: float = 1.0, planner: Planner | None = None,
                 thermal: ThermalSite | None = None) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        self.piles = piles
        self.site = site
        self.strategy = strategy
        self.tariff = tariff
        self.dispatch = dispatch or (lambda t: DispatchLimits.none(np.asarray(t).size))
        self.tick_s = tick_s
        self.planner = planner  # the rolling-horizon planner (mpc), see scheduler.planner
        self.thermal = thermal  # the transformer's thermal limit joins the kW cap (see scheduler.thermal)

    def site_import_kw(self, thermal: ThermalNow | None, base_kw: float = 0.0) -> float:
        """The transformer's import limit now, before dispatch and margin: the kW cap, or its thermal limit."""
        if self.thermal is None or thermal is None:
            return self.site.import_kw
        return self.thermal.limit_now_kw(thermal, self.site.import_kw, base_kw)

    def hard_limits(self, t_s: float, thermal: ThermalNow | None = None, base_kw: float = 0.0
                    ) -> tuple[HardLimits, float]:
        d = self.dispatch(np.array([t_s]))
        site_import = min(self.site_import_kw(thermal, base_kw), float(d.site_import_max_kw[0]))
        limits = HardLimits(
            import_kw=site_import - self.site.margin_kw,
            export_kw=max(0.0, min(self.site.export_kw, float(d.site_export_max_kw[0]))),
            phase_kw=self.site.phase_kw,
            ev_import_kw=float(d.ev_import_max_kw[0]),
            ev_export_kw=max(0.0, float(d.ev_export_max_kw[0])),
        )
        return limits, site_import

    def single_step_input(self, snap: Snapshot, limits: HardLimits) -> PlanInput:
        """A one-step PlanInput from measured values (what the heuristics decide on)."""
        t = np.array([snap.t_s])
        imp, exp = self.tariff(t)
        d = self.dispatch(t)
        fixed = snap.assumed_kw
        return PlanInput(
            t0_s=snap.t_s,
            step_s=np.array([self.tick_s]),
            base_kw=np.array([snap.base_kw + fixed.sum()]),
            base_phase_kw=(snap.base_phase_kw(self.piles.phase_share) + fixed @ self.piles.phase_share)[None, :],
            import_limit_kw=np.array([limits.import_kw]),
            export_limit_kw=np.array([limits.export_kw]),
            phase_limit_kw=limits.phase_kw,
            ev_import_limit_kw=np.array([limits.ev_import_kw - fixed.sum()]),
            ev_export_limit_kw=np.array([limits.ev_export_kw]),
            setpoint_kw=d.setpoint_kw,
            setpoint_scope=d.setpoint_scope,
            import_price=imp,
            export_price=exp,
            piles=self.piles,
            sessions=snap.sessions,
            pile_online=snap.controllable,
        )

    def decide(self, snap: Snapshot) -> Decision:
        limits, limit_kw = self.hard_limits(snap.t_s, snap.thermal, snap.base_kw + float(snap.assumed_kw.sum()))
        t0 = time.perf_counter()
        plan: Plan | None = None
        planned = fallback = False
        if self.strategy == "mpc":
            if self.planner is None:
                raise RuntimeError("strategy mpc needs a planner")
            sp, plan, planned = self.planner.setpoints(snap, limits, self)
            fallback = bool(plan is not None and plan.fallback and planned)
        else:
            plan = heuristics.ALLOCATORS[self.strategy](self.single_step_input(snap, limits))
            sp = plan.first_kw
            planned = True
        plan_ms = (time.perf_counter() - t0) * 1e3
        if self.strategy != "uncontrolled":
            sp = safety.enforce(sp, self.piles, snap, limits, urgent=snap.sessions.urgent)
        return Decision(setpoints_kw=sp, limits=limits, limit_kw=limit_kw, plan=plan, plan_ms=plan_ms,
                        planned=planned, fallback=fallback)
