"""The transformer's thermal state in simulation (IEC 60076-7, `scheduler.thermal`).

Every run starts from the same state: steady at the first step's household load and ambient (the
transformer has carried the evening's households for hours before the scenario's noon start). The
engine advances it step by step with the load the site actually drew, and `mpc` plans against it;
the KPIs recompute the same series from the run's totals.
"""

from __future__ import annotations

import numpy as np

from youxu.scheduler import thermal
from youxu.scheduler.thermal import AmbientProfile, ThermalParams, ThermalSite, ThermalState
from youxu.sim.scenario import Scenario


def initial_state(sc: Scenario, p: ThermalParams) -> ThermalState:
    return thermal.steady_state(p, p.load_factor(float(sc.base_kw()[0])), float(sc.ambient_per_step_c()[0]))


def ambient_profile(sc: Scenario) -> AmbientProfile:
    """Ambient °C at epoch times from the scenario's series (held beyond its ends): a day-ahead forecast
    as good as the weather service's, which is what a controller would use."""
    c = sc.ambient_per_step_c()
    epoch0, step = sc.start.timestamp(), sc.step_s

    def at(t_s: np.ndarray) -> np.ndarray:
        k = np.clip(((np.asarray(t_s, dtype=float) - epoch0) // step).astype(np.int64), 0, c.size - 1)
        return c[k]

    return at


def thermal_site(sc: Scenario, window_s: float = 900.0) -> ThermalSite | None:
    p = sc.site.thermal_params()
    th = sc.site.thermal
    if p is None or th is None:
        return None
    return ThermalSite(p, allow_above_rated=th.allow_above_rated, above_rated_max_kw=th.above_rated_max_kw,
                       window_s=window_s, ambient=ambient_profile(sc))


def thermal_series(sc: Scenario, total_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(top-oil °C, hot-spot °C at the end of each step, equivalent ageing hours) for the site's load per
    step; None without `site.thermal`."""
    p = sc.site.thermal_params()
    if p is None:
        return None
    k = np.abs(np.asarray(total_kw, dtype=float)) / (p.power_factor * p.rated_kva)
    top, hot, end = thermal.simulate(p, initial_state(sc, p), k, sc.ambient_per_step_c(),
                                     np.full(k.size, float(sc.step_s)))
    return top, hot, end.ageing_h
