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


# Approximate catalogue losses of S11-series oil-immersed distribution transformers (no-load W, load W at 75 °C)
TYPICAL_LOSSES_W = {315.0: (480.0, 3650.0), 400.0: (570.0, 4300.0), 630.0: (810.0, 6200.0), 1000.0: (1150.0, 10300.0)}
ABOVE_RATED_PU = 1.5  # IEC 60076-7's ceiling for normal cyclic loading of distribution transformers


def with_thermal_limit(sc: Scenario) -> Scenario:
    """The scenario judged by the transformer's thermal limit instead of its kW cap: `site.thermal` with
    the size's typical losses, above-rated operation allowed up to 1.5 per unit (apparent power at the
    default power factor), and the phase limits raised in the same proportion as the cap (they are
    the transformer's share per phase)."""
    if sc.site.thermal is not None:
        return sc
    kva = sc.site.transformer_kva
    size = min(TYPICAL_LOSSES_W, key=lambda k: abs(k - kva))
    no_load, load = (w * kva / size for w in TYPICAL_LOSSES_W[size])
    above_kw = round(ABOVE_RATED_PU * 0.95 * kva, 1)
    raw = sc.model_dump(mode="json", exclude_none=True)
    raw["site"]["thermal"] = {"load_loss_w": round(load, 1), "no_load_loss_w": round(no_load, 1),
                              "allow_above_rated": True, "above_rated_max_kw": above_kw}
    if sc.site.phase_limit_kw is not None:
        f = above_kw / sc.site.limit_kw
        raw["site"]["phase_limit_kw"] = {k: round(v * f, 1) for k, v in sc.site.phase_limit_kw.items()}
    return Scenario.model_validate(raw)
