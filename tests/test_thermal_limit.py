"""The thermal limit joins the site's limits: per step for the planner, of now for the safety layer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from youxu.scheduler import thermal
from youxu.scheduler.decision import Controller, SiteLimits
from youxu.scheduler.rolling import PlanningConfig, RollingPlanner
from youxu.scheduler.thermal import ThermalNow, ThermalParams, ThermalSite

from .helpers import piles, sessions, snapshot

T0 = 1_782_900_000.0
P = ThermalParams(rated_kva=630, load_loss_w=6200, no_load_loss_w=810)


def _flat(price: float = 0.5):
    return lambda t: (np.full(np.asarray(t).size, price), np.full(np.asarray(t).size, price))


def _controller(th: ThermalSite | None, strategy: str = "mpc", n: int = 60) -> Controller:
    planner = RollingPlanner(PlanningConfig(horizon_s=6 * 3600, step_s=900, time_limit_ms=5000, threaded=False))
    return Controller(piles(n), SiteLimits(import_kw=560.0, export_kw=0.0, phase_kw=None, margin_kw=0.0),
                      strategy, _flat(), tick_s=1.0, planner=planner, thermal=th)


def _snap(n: int, base_kw: float, now: ThermalNow | None):
    s = snapshot(piles(n), base_kw, sess=sessions(n, remaining_kwh=30.0, t0=T0, departure_h=[6.0] * n), t_s=T0)
    return replace(s, thermal=now)


def test_a_hot_transformer_tightens_the_safety_layer_and_the_plan():
    hot = ThermalNow(state=thermal.steady_state(P, 1.0, 37.0), ambient_c=37.0)  # 37 °C, hours at rated
    site = ThermalSite(P, ambient=lambda t: np.full(np.asarray(t).shape, 37.0))
    ctl = _controller(site)
    snap = _snap(60, 250.0, hot)
    limit_now = ctl.site_import_kw(hot, 250.0)
    assert limit_now < 450.0  # well below the 560 kW cap: the hot-spot is at 115 °C
    d = ctl.decide(snap)
    assert d.limit_kw == pytest.approx(limit_now)
    assert d.limits.import_kw == pytest.approx(limit_now)
    assert 250.0 + d.setpoints_kw.sum() <= limit_now + 1e-6
    inp = ctl.planner.plan_input(snap, ctl)
    assert np.all(inp.import_limit_kw <= 560.0 + 1e-9)
    assert inp.import_limit_kw[0] == pytest.approx(limit_now)
    # riding the planner's limits never takes hot-spot or top-oil above their maxima
    _, hot_c, _ = thermal.simulate(P, hot.state, inp.import_limit_kw / (P.power_factor * P.rated_kva),
                                   np.full(inp.horizon, 37.0), inp.step_s)
    assert hot_c[1:].max() <= P.hotspot_max_c + 1e-3


def test_without_thermal_the_limits_are_the_kw_cap():
    hot = ThermalNow(state=thermal.steady_state(P, 1.0, 37.0), ambient_c=37.0)
    for ctl, now in ((_controller(None), hot), (_controller(ThermalSite(P)), None)):
        snap = _snap(60, 250.0, now)
        d = ctl.decide(snap)
        assert d.limit_kw == 560.0
        assert np.all(ctl.planner.plan_input(snap, ctl).import_limit_kw == 560.0)


def test_a_cold_transformer_stays_under_the_cap_unless_above_rated_is_allowed():
    cold = ThermalNow(state=thermal.steady_state(P, 0.3, -5.0), ambient_c=-5.0)
    winter = lambda t: np.full(np.asarray(t).shape, -5.0)  # noqa: E731
    tight = _controller(ThermalSite(P, ambient=winter), n=100)
    snap = _snap(100, 200.0, cold)
    assert np.all(tight.planner.plan_input(snap, tight).import_limit_kw == 560.0)
    loose = _controller(ThermalSite(P, allow_above_rated=True, above_rated_max_kw=750.0, ambient=winter), n=100)
    inp = loose.planner.plan_input(snap, loose)
    assert inp.import_limit_kw.max() == pytest.approx(750.0)
    assert np.all(inp.import_limit_kw > 560.0)
    d = loose.decide(snap)
    assert d.limit_kw == pytest.approx(750.0)
    assert 200.0 + d.setpoints_kw.sum() > 560.0  # 100 cars at 7 kW: more than the cap is served


def test_llf_also_clamps_with_the_thermal_limit_of_now():
    hot = ThermalNow(state=thermal.steady_state(P, 1.0, 37.0), ambient_c=37.0)
    ctl = _controller(ThermalSite(P), strategy="llf")
    d = ctl.decide(_snap(60, 250.0, hot))
    assert 250.0 + d.setpoints_kw.sum() <= ctl.site_import_kw(hot, 250.0) + 1e-6
