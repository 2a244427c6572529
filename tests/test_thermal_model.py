"""The per-tick IEC 60076-7 update against the `transformer-thermal-model` package on the same profiles.

The package (an IEC 60076-7 implementation by a distribution grid operator) computes whole
profiles; the daemon needs one step at a time. Both must agree within 1 °C on the package's own
test profiles and on a day of ours.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import numpy as np
import pytest
from transformer_thermal_model.aging import days_aged
from transformer_thermal_model.model import Model
from transformer_thermal_model.schemas import InputProfile, UserTransformerSpecifications
from transformer_thermal_model.transformer import DistributionTransformer, PaperInsulationType

from youxu.scheduler import thermal
from youxu.scheduler.thermal import ThermalConstants, ThermalParams, ThermalState


def _package_run(spec: UserTransformerSpecifications, times: list[datetime], load: np.ndarray,
                 ambient: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    tr = DistributionTransformer(user_specs=spec)
    prof = InputProfile.create(datetime_index=times, load_profile=load, ambient_temperature_profile=ambient)
    out = Model(temperature_profile=prof, transformer=tr).run()
    aged_h = 24.0 * days_aged(out.hot_spot_temp_profile, PaperInsulationType.NORMAL)
    return np.asarray(out.top_oil_temp_profile), np.asarray(out.hot_spot_temp_profile), aged_h


def _ours(spec: UserTransformerSpecifications, times: list[datetime], load: np.ndarray,
          ambient: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    tr = DistributionTransformer(user_specs=spec)  # the package's defaults for what the spec leaves out
    s = tr.specs
    p = ThermalParams(
        rated_kva=1.0, power_factor=1.0, load_loss_w=s.load_loss, no_load_loss_w=s.no_load_loss,
        constants=ThermalConstants(
            top_oil_rise_k=s.top_oil_temp_rise, hotspot_gradient_k=s.hot_spot_fac * s.winding_oil_gradient,
            oil_exponent_x=s.oil_exp_x, winding_exponent_y=s.winding_exp_y, k11=s.oil_const_k11,
            k21=s.winding_const_k21, k22=s.winding_const_k22, tau_oil_min=s.time_const_oil,
            tau_winding_min=s.time_const_windings, ambient_surcharge_k=s.amb_temp_surcharge))
    k = np.asarray(load, dtype=float) / s.nom_load_sec_side
    dt = np.array([(b - a).total_seconds() for a, b in itertools.pairwise(times)])
    s0 = ThermalState(top_oil_c=float(ambient[0]), winding_rise_k=0.0)  # the package's cold start
    top, hot, end = thermal.simulate(p, s0, k[1:], np.asarray(ambient[1:], dtype=float), dt)
    return np.concatenate([[s0.top_oil_c], top]), np.concatenate([[s0.hotspot_c], hot]), end.ageing_h


def _agree(spec, times, load, ambient) -> tuple[float, float]:
    top_p, hot_p, aged_p = _package_run(spec, times, load, ambient)
    top_o, hot_o, aged_o = _ours(spec, times, load, ambient)
    assert np.max(np.abs(top_o - top_p)) < 1.0
    assert np.max(np.abs(hot_o - hot_p)) < 1.0
    assert aged_o == pytest.approx(aged_p, rel=0.02, abs=1e-3)
    return float(hot_p.max()), float(top_p.max())


def test_package_distribution_step_profile():
    """The package's own distribution test: 8 oil time constants at 2/3 load, then 8 at no load."""
    spec = UserTransformerSpecifications(load_loss=1000, nom_load_sec_side=1500, no_load_loss=200,
                                         amb_temp_surcharge=20, hot_spot_fac=1.1)
    t0 = datetime(2021, 1, 1)
    times = [t0 + timedelta(minutes=180 * i) for i in range(16)]
    load = np.array([1000.0] * 8 + [0.0] * 8)
    hot_max, _ = _agree(spec, times, load, np.full(16, 20.0))
    assert hot_max == pytest.approx(81.83117101, abs=1e-3)  # the package's expected value


def test_package_iec_load_profile():
    """The load cycle of IEC 60076-7 annex E (1.0, 0.6, 1.5, 0.3, 2.1, 0 pu) in 5-minute steps."""
    spec = UserTransformerSpecifications(load_loss=1000, nom_load_sec_side=1000, no_load_loss=1,
                                         amb_temp_surcharge=0, top_oil_temp_rise=38.3, winding_oil_gradient=14.5,
                                         hot_spot_fac=1.4)
    breakpoints = [0, 190, 365, 500, 705, 730, 745]
    factors = [1.0, 0.6, 1.5, 0.3, 2.1, 0.0]
    t0 = datetime(2021, 1, 1)
    times, load = [t0], [1000.0]
    for (a, b), f in zip(itertools.pairwise(breakpoints), factors, strict=True):
        for m in range(a + 5, b + 1, 5):
            times.append(t0 + timedelta(minutes=m))
            load.append(1000.0 * f)
    _agree(spec, times, np.array(load), np.full(len(times), 25.6))


def test_our_summer_day_on_630_kva():
    """A generated 630 kVA summer day (households and uncontrolled EVs), 25-37 °C ambient, minute steps."""
    from youxu.sim.generate import generate_scenario

    sc = generate_scenario("community-630", season="summer", seed=3, history_days=0, dispatch=False)
    base = sc.base_kw()
    n = base.size
    t_h = np.arange(n) * sc.step_s / 3600.0 + 12.0  # the scenario starts at local noon
    ambient = 31.0 + 6.0 * np.cos(2 * np.pi * (t_h - 15.0) / 24.0)
    kva, pf = float(sc.site.transformer_kva), 0.95
    nom_a = kva * 1000.0 / (np.sqrt(3) * 400.0)
    spec = UserTransformerSpecifications(load_loss=6200, no_load_loss=810, nom_load_sec_side=nom_a,
                                         amb_temp_surcharge=0, top_oil_temp_rise=55.0, winding_oil_gradient=23.0,
                                         hot_spot_fac=1.0)
    t0 = datetime(2026, 7, 1, 12)
    times = [t0 + timedelta(seconds=sc.step_s * i) for i in range(n)]
    load_a = base / (pf * kva) * nom_a
    hot_max, _ = _agree(spec, times, load_a, ambient)
    assert hot_max > 60.0  # a loaded day, not an idle transformer


def test_steady_state_at_rated_load_is_the_reference():
    """IEC 60076-7 table 5 defaults: rated load in 20 °C ambient gives the 98 °C reference hot-spot."""
    p = ThermalParams(rated_kva=630, load_loss_w=6200, no_load_loss_w=810, power_factor=1.0)
    s = thermal.steady_state(p, 1.0, 20.0)
    assert s.hotspot_c == pytest.approx(98.0)
    assert s.top_oil_c == pytest.approx(75.0)
    # and a long step at rated load converges there from cold
    end = thermal.step(p, ThermalState(20.0, 0.0), 1.0, 20.0, 30 * 86400.0)
    assert end.hotspot_c == pytest.approx(98.0, abs=1e-6)
    assert float(thermal.ageing_rate(104.0)) == pytest.approx(2.0)


def test_limit_profile_keeps_both_maxima_and_never_exceeds_the_cap():
    """Riding the horizon's thermal limit keeps hot-spot and top-oil at or below their maxima; it is
    the cap where the transformer is cool and tightens as the oil heats up on a hot afternoon."""
    p = ThermalParams(rated_kva=630, load_loss_w=6200, no_load_loss_w=810)
    s0 = thermal.steady_state(p, 0.6, 30.0)
    steps = np.full(96, 900.0)
    t_h = np.arange(96) * 0.25
    ambient = 31.0 + 6.0 * np.cos(2 * np.pi * (t_h - 3.0) / 24.0)  # hottest three hours from now
    cap = np.full(96, 800.0)
    lim = thermal.limit_profile(p, s0, steps, ambient, np.zeros(96), cap)
    assert np.all(lim <= cap + 1e-9)
    top, hot, _ = thermal.simulate(p, s0, lim / (p.power_factor * p.rated_kva), ambient, steps)
    assert hot.max() <= p.hotspot_max_c + 1e-3
    assert top.max() <= p.top_oil_max_c + 1e-3
    assert hot.max() > p.hotspot_max_c - 0.5  # it does use what the transformer can give
    assert lim[0] == pytest.approx(800.0)  # cool enough now for the full cap over one step
    assert lim[12:24].max() < 600.0  # in the heat of the afternoon, below rated
