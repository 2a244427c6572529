"""Household load forecast: cold start, learning the daily profile, blending the present, causality."""

from __future__ import annotations

import numpy as np
import pytest

from youxu.scheduler.forecast import BaseLoadForecaster, ForecastConfig, residential_shape

MIDNIGHT_LOCAL = 1_782_835_200.0  # 2026-07-01 00:00 +08:00 (a Wednesday) as epoch s
STEP = 900.0


def day_pattern(t_s: np.ndarray) -> np.ndarray:
    """A day with a clear shape: 200 kW at night, 400 kW from 18:00 to 22:00 local."""
    hour = ((t_s + 8 * 3600) % 86400) / 3600.0
    return np.where((hour >= 18) & (hour < 22), 400.0, 200.0)


def grid(t0: float, n: int = 96) -> np.ndarray:
    return t0 + STEP * (np.arange(n) + 1)


def test_cold_start_gives_the_configured_default_profile():
    prof = np.linspace(100.0, 195.0, 96)
    f = BaseLoadForecaster(ForecastConfig(default_profile_kw=tuple(prof)))
    total, phases = f.forecast(grid(MIDNIGHT_LOCAL))
    assert total == pytest.approx(prof, rel=1e-9)
    assert phases.sum(axis=1) == pytest.approx(total)


def test_cold_start_without_a_scale_fits_the_built_in_shape_to_the_first_reading():
    f = BaseLoadForecaster()
    f.observe(MIDNIGHT_LOCAL + 20 * 3600, 300.0)  # 20:00 local, the shape's peak
    total, _ = f.forecast(grid(MIDNIGHT_LOCAL + 86400))
    assert total.max() == pytest.approx(300.0, rel=0.02)
    assert total == pytest.approx(300.0 * residential_shape(), rel=0.02)


def test_learns_a_repeated_day_from_minute_readings():
    rng = np.random.default_rng(0)
    f = BaseLoadForecaster(ForecastConfig(default_peak_kw=250.0))
    t = MIDNIGHT_LOCAL + np.arange(0, 5 * 86400, 60.0)
    f.observe_many(t, day_pattern(t) + rng.normal(0, 10, t.size))
    tomorrow = grid(MIDNIGHT_LOCAL + 5 * 86400)
    total, _ = f.forecast(tomorrow)
    # the profile has learnt the evening block; far enough ahead the present no longer matters
    want = day_pattern(tomorrow - STEP / 2)
    assert np.abs(total[8:] - want[8:]).max() < 25.0
    assert total[76:84].mean() == pytest.approx(400.0, abs=15.0)  # 19:00-21:00


def test_present_deviation_shifts_the_near_future_and_fades():
    f = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96, recent_tau_s=3600.0))
    t0 = MIDNIGHT_LOCAL + 10 * 3600
    for k in range(30):  # the last half hour was 50 kW above the profile
        f.observe(t0 + 60.0 * k, 250.0)
    now = t0 + 60.0 * 29
    total, _ = f.forecast(now + STEP * (np.arange(40) + 1))
    assert total[0] == pytest.approx(250.0, abs=10.0)
    assert total[-1] == pytest.approx(200.0, abs=1.0)  # 10 h ahead: back to the profile
    assert np.all(np.diff(total) <= 1e-9)  # fading monotonically



def test_spread_learns_the_day_to_day_scatter_and_shrinks_towards_the_present():
    f = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96, recent_tau_s=3600.0))
    t = MIDNIGHT_LOCAL + np.arange(0, 20 * 86400, 60.0)
    hour = ((t + 8 * 3600) % 86400) / 3600.0
    day = ((t - MIDNIGHT_LOCAL) // 86400).astype(int)
    swing = np.where(day % 2 == 0, 40.0, -40.0)  # the evenings scatter by +-40 kW, the nights not at all
    f.observe_many(t, 200.0 + np.where((hour >= 18) & (hour < 22), swing, 0.0))
    now = float(t[-1])  # 23:59 local
    ahead = now + 60.0 + STEP * (np.arange(96) + 1)  # the next day, quarter by quarter
    spread, phase_spread = f.spread(ahead, np.full(96, STEP))
    evening = ((ahead - STEP / 2 + 8 * 3600) % 86400) / 3600.0
    eve = (evening >= 18.5) & (evening < 21.5)
    night = (evening >= 2) & (evening < 5)
    assert spread[eve] == pytest.approx(40.0, rel=0.15)  # about one standard deviation of the scatter
    assert spread[night].max() < 5.0  # the prior's 8 % has been learnt away
    # one reading per minute for the total: each phase a third of it, and a third of its scatter
    assert phase_spread[eve] == pytest.approx(np.full((eve.sum(), 3), 40.0 / 3), rel=0.15)
    # the next minutes are known from the meter: no spread right ahead, the full scatter hours on
    g = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96, recent_tau_s=3600.0))
    g.observe(MIDNIGHT_LOCAL, 200.0)
    near_far, _ = g.spread(MIDNIGHT_LOCAL + np.array([60.0, 12 * 3600.0]), np.array([60.0, 900.0]))
    assert near_far[0] < 0.2 * near_far[1]
    assert near_far[1] == pytest.approx(0.08 * 200.0, rel=0.01)  # cold: the prior's share of the profile


def test_phases_are_learnt_separately():
    f = BaseLoadForecaster(ForecastConfig(default_peak_kw=300.0))
    t = MIDNIGHT_LOCAL + np.arange(0, 7 * 86400, 300.0)
    ph = np.repeat(np.array([[150.0, 100.0, 50.0]]), t.size, axis=0)
    f.observe_many(t, ph.sum(axis=1), ph)
    _, phases = f.forecast(grid(MIDNIGHT_LOCAL + 7 * 86400 + 6 * 3600))
    assert phases[-1] == pytest.approx([150.0, 100.0, 50.0], abs=8.0)


def test_weekly_profiles_keep_weekends_apart():
    f = BaseLoadForecaster(ForecastConfig(default_peak_kw=200.0, weekly=True))
    # 2026-07-01 is a Wednesday: two weeks of 100 kW weekdays and 300 kW weekends
    t = MIDNIGHT_LOCAL + np.arange(0, 14 * 86400, 600.0)
    day = ((t + 8 * 3600) // 86400).astype(int)
    weekend = ((day + 3) % 7) >= 5
    f.observe_many(t, np.where(weekend, 300.0, 100.0))
    sat_noon = MIDNIGHT_LOCAL + 17 * 86400 + 12 * 3600  # Saturday
    mon_noon = MIDNIGHT_LOCAL + 19 * 86400 + 12 * 3600
    sat = f.profile_kw(np.array([sat_noon]))[0].sum()
    mon = f.profile_kw(np.array([mon_noon]))[0].sum()
    assert sat == pytest.approx(300.0, abs=30.0)  # four weekend days learnt so far
    assert mon == pytest.approx(100.0, abs=10.0)
    assert sat - mon > 150.0


def test_causal_the_past_is_not_rewritten_and_the_future_is_not_seen():
    a = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96))
    b = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96))
    t = MIDNIGHT_LOCAL + np.arange(0, 86400, 60.0)
    a.observe_many(t, day_pattern(t))
    b.observe_many(t, day_pattern(t))
    b.observe(t[100], 10_000.0)  # a late reading for a time already past: ignored
    when = grid(t[-1])
    assert a.forecast(when)[0] == pytest.approx(b.forecast(when)[0])
    # a forecast made now does not depend on readings that come later
    c = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96))
    c.observe_many(t[:600], day_pattern(t[:600]))
    before = c.forecast(grid(t[599]))[0]
    c.observe_many(t[600:], np.full(t.size - 600, 900.0))
    d = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96))
    d.observe_many(t[:600], day_pattern(t[:600]))
    assert d.forecast(grid(t[599]))[0] == pytest.approx(before)


def test_bad_readings_are_skipped():
    f = BaseLoadForecaster(ForecastConfig(default_profile_kw=(200.0,) * 96))
    f.observe(MIDNIGHT_LOCAL, float("nan"))
    f.observe(MIDNIGHT_LOCAL + 60, 200.0, np.array([np.nan, 1.0, 1.0]))
    total, _ = f.forecast(grid(MIDNIGHT_LOCAL))
    assert np.all(np.isfinite(total))
    assert f.last_t_s is None
