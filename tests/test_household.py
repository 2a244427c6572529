"""The household-load model and measured-load import: shape, diversity, seasons, phases, speed."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from youxu.config.errors import UserError
from youxu.sim.household import Heating, HouseholdModel, HouseholdParams, simulate_households, sun_times_h
from youxu.sim.measured_load import load_measured_csv, measured_phase_kw
from youxu.sim.tou import LocalAxis

CST = timezone(timedelta(hours=8))
STARTS = {
    "summer": datetime(2026, 7, 1, 12, tzinfo=CST),
    "winter": datetime(2026, 1, 14, 12, tzinfo=CST),
    "shoulder": datetime(2026, 4, 15, 12, tzinfo=CST),
}
# documented in sim/PARAMETERS.md: hourly mean profile, evening peak over night valley
PEAK_TO_VALLEY_RANGE = (3.0, 5.5)


def _week(season: str, n: int = 500, seed: int = 7, **kw: object):
    axis = LocalAxis(STARTS[season], 7 * 86400)
    return simulate_households(HouseholdParams(n=n, season=season, **kw), axis, np.random.default_rng(seed)), axis


def _hourly_profile(total_kw: np.ndarray, axis: LocalAxis) -> np.ndarray:
    h = axis.local_hour()
    return np.array([total_kw[(h >= k) & (h < k + 1)].mean() for k in range(24)])


@pytest.fixture(scope="module")
def weeks() -> dict:
    return {s: _week(s) for s in ("summer", "winter", "shoulder")}


@pytest.mark.parametrize("season", ["summer", "winter", "shoulder"])
def test_daily_shape_of_500_homes(weeks: dict, season: str) -> None:
    load, axis = weeks[season]
    prof = _hourly_profile(load.total_kw, axis)
    assert 19 <= int(np.argmax(prof)) <= 21, f"evening peak at {np.argmax(prof)}:00: {prof.round(1)}"
    assert 2 <= int(np.argmin(prof)) <= 5, f"night valley at {np.argmin(prof)}:00: {prof.round(1)}"
    ratio = prof.max() / prof.min()
    assert PEAK_TO_VALLEY_RANGE[0] <= ratio <= PEAK_TO_VALLEY_RANGE[1], ratio
    # a morning rise and a lunch bump above the mid-morning and afternoon lull
    assert prof[7] > 1.5 * prof[4]
    assert prof[12] > prof[15] * 0.98 or prof[11] > prof[15]
    # daily energy per home: Beijing residential 6-11 kWh/day (PARAMETERS.md)
    kwh_day = load.total_kw.sum() / 60 / 7 / 500
    assert 5.0 <= kwh_day <= 11.0, kwh_day


def test_summer_air_conditioning_raises_the_evening(weeks: dict) -> None:
    summer = _hourly_profile(weeks["summer"][0].total_kw, weeks["summer"][1])
    spring = _hourly_profile(weeks["shoulder"][0].total_kw, weeks["shoulder"][1])
    assert summer[21] > 1.15 * spring[21]
    assert weeks["summer"][0].temperature_c.max() > 28.0
    no_ac, _ = _week("summer", ac_scale=0.0)
    assert weeks["summer"][0].total_kw.sum() > 1.15 * no_ac.total_kw.sum()


def test_coal_to_electricity_heating_loads_the_night() -> None:
    plain, axis = _week("winter", n=200)
    heated, _ = _week("winter", n=200, heating=Heating(share=0.5))
    p0, p1 = _hourly_profile(plain.total_kw, axis), _hourly_profile(heated.total_kw, axis)
    assert p1[2] > 2.0 * p0[2]  # heat pumps keep running at night
    assert p1[20] - p1[19] > 20.0  # storage heaters switch on at 20:00 (≈ 30 homes × 2.5-5 kW)
    assert heated.total_kw.sum() > 1.5 * plain.total_kw.sum()
    # heating follows the cold: the model's heat-pump demand falls as it warms up
    from youxu.sim.household import heat_pump_fraction

    assert heat_pump_fraction(np.array([-10.0]))[0] > heat_pump_fraction(np.array([5.0]))[0] > 0


def test_weekend_mornings_and_middays_are_busier(weeks: dict) -> None:
    load, axis = weeks["shoulder"]
    h = axis.local_hour()
    weekend_day = axis.weekend()[axis.day_index()]
    midday = (h >= 9) & (h < 16)
    assert load.total_kw[midday & weekend_day].mean() > 1.1 * load.total_kw[midday & ~weekend_day].mean()


def test_diversity_one_home_is_spiky_many_are_smooth() -> None:
    axis = LocalAxis(STARTS["shoulder"], 86400)
    load = HouseholdModel(HouseholdParams(n=500, season="shoulder"), np.random.default_rng(3)).simulate(
        axis, per_home=True)
    homes = load.per_home_kw
    assert homes.shape == (500, axis.n)
    np.testing.assert_allclose(homes.sum(axis=0), load.total_kw, rtol=1e-9, atol=1e-9)
    single_peaks = homes.max(axis=1)
    assert np.median(single_peaks) > 1.5  # a kettle or a water heater: kW-sized spikes
    assert np.median(single_peaks / homes.mean(axis=1)) > 6
    aggregate = load.total_kw
    # after-diversity maximum demand: far below the sum of individual peaks
    assert aggregate.max() < 0.3 * single_peaks.sum()
    assert aggregate.max() < 0.3 * 500 * np.median(single_peaks)
    # smooth: minute-to-minute steps are small against the level
    assert np.abs(np.diff(aggregate)).mean() < 0.03 * aggregate.mean()
    assert np.abs(np.diff(homes[0])).max() > 0.5


def test_phase_assignment_follows_configured_imbalance() -> None:
    load, _ = _week("shoulder", n=600, phase_shares=(0.40, 0.35, 0.25))
    counts = np.bincount(load.homes.phase, minlength=3)
    assert counts.tolist() == [240, 210, 150]
    energy = load.phase_kw.sum(axis=0)
    assert energy[0] > energy[1] > energy[2]


def test_same_seed_same_load_and_homes_do_not_depend_on_days() -> None:
    a, _ = _week("summer", n=50, seed=11)
    b, _ = _week("summer", n=50, seed=11)
    c, _ = _week("summer", n=50, seed=12)
    np.testing.assert_array_equal(a.phase_kw, b.phase_kw)
    assert not np.array_equal(a.phase_kw, c.phase_kw)
    one_day = HouseholdModel(HouseholdParams(n=50, season="summer"), np.random.default_rng(11))
    np.testing.assert_array_equal(one_day.homes.phase, a.homes.phase)


def test_sun_times_beijing() -> None:
    rise, sett = sun_times_h(datetime(2026, 6, 21).date())
    assert 4.6 < rise < 5.1 and 19.5 < sett < 19.9
    rise, sett = sun_times_h(datetime(2026, 12, 21).date())
    assert 7.2 < rise < 7.7 and 16.7 < sett < 17.2


def test_1500_homes_for_a_week_is_fast() -> None:
    axis = LocalAxis(STARTS["summer"], 7 * 86400)
    t0 = time.perf_counter()
    load = simulate_households(HouseholdParams(n=1500, season="summer"), axis, np.random.default_rng(1))
    elapsed = time.perf_counter() - t0
    assert load.phase_kw.shape == (7 * 1440, 3)
    assert elapsed < 3.0, elapsed


def test_axis_must_be_one_minute() -> None:
    with pytest.raises(ValueError, match="60 s"):
        HouseholdModel(HouseholdParams(n=5), np.random.default_rng(1)).simulate(LocalAxis(STARTS["summer"], 3600, 900))


# ---- measured load --------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_measured_15min_total_is_spread_over_minutes_preserving_energy(tmp_path: Path) -> None:
    rows = ["timestamp,kw"]
    t0 = datetime(2025, 7, 1, 0, 0)  # naive: local Beijing time
    values = [100 + 50 * np.sin(i / 96 * 2 * np.pi) for i in range(96)]
    for i, v in enumerate(values):
        rows.append(f"{(t0 + timedelta(minutes=15 * i)).isoformat()},{v:.3f}")
    m = load_measured_csv(_write(tmp_path / "m.csv", "\n".join(rows)))
    assert not m.per_phase and m.interval_s == 900
    axis = LocalAxis(datetime(2026, 7, 1, 12, tzinfo=CST), 86400)
    out = measured_phase_kw(m, axis)  # time-of-day: 12:00 local of the measured day
    assert out.shape == (1440, 3)
    np.testing.assert_allclose(out[:, 0], out[:, 1])
    total = out.sum(axis=1)
    # 12:00 is sample 48; each sample holds for 15 minutes
    np.testing.assert_allclose(total[:15], values[48], atol=1e-3)
    np.testing.assert_allclose(total[15:30], values[49], atol=1e-3)
    # the afternoon of day 1 then the morning (wrapped) — the whole measured day, once
    assert total.sum() / 60 == pytest.approx(sum(values) * 0.25, rel=1e-6)
    scaled = measured_phase_kw(m, axis, scale=1.5)
    np.testing.assert_allclose(scaled, 1.5 * out)
    peaked = measured_phase_kw(m, axis, target_peak_kw=300.0)
    assert peaked.sum(axis=1).max() == pytest.approx(300.0)


def test_measured_per_phase_seconds_are_averaged_per_minute(tmp_path: Path) -> None:
    start = datetime(2026, 7, 1, 12, tzinfo=CST)
    rows = ["epoch_s,L1,L2,L3"]
    t = start.timestamp()
    for i in range(3 * 3600 // 10):  # 10-s samples over three hours
        rows.append(f"{t + 10 * i:.0f},{10 + (i % 6)},{20.0},{30 + (i % 2)}")
    m = load_measured_csv(_write(tmp_path / "p.csv", "\n".join(rows)))
    assert m.per_phase
    axis = LocalAxis(start, 3 * 3600)
    out = measured_phase_kw(m, axis, align="absolute")
    np.testing.assert_allclose(out[:, 0], 12.5)  # mean of 10..15
    np.testing.assert_allclose(out[:, 1], 20.0)
    np.testing.assert_allclose(out[:, 2], 30.5)
    with pytest.raises(UserError, match="covers"):
        measured_phase_kw(m, LocalAxis(start, 4 * 3600), align="absolute")


def test_measured_interval_end_labels_and_bad_files(tmp_path: Path) -> None:
    rows = "time,kw\n2026-07-01T12:15:00+08:00,10\n2026-07-01T12:30:00+08:00,20\n2026-07-01T12:45:00+08:00,30\n"
    m = load_measured_csv(_write(tmp_path / "e.csv", rows), label="end")
    axis = LocalAxis(datetime(2026, 7, 1, 12, tzinfo=CST), 2700)
    out = measured_phase_kw(m, axis, align="absolute").sum(axis=1)
    np.testing.assert_allclose(out[:15], 10.0)
    np.testing.assert_allclose(out[30:], 30.0)
    with pytest.raises(UserError, match="no power column"):
        load_measured_csv(_write(tmp_path / "b.csv", "time,volts\n1,2\n2,3\n3,4\n"))
    with pytest.raises(UserError, match="line 3"):
        load_measured_csv(_write(tmp_path / "c.csv", "time,kw\n1,2\nx,3\n3,4\n"))
    with pytest.raises(UserError, match="no such file"):
        load_measured_csv(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="is a directory"):
        load_measured_csv(tmp_path)
    binary = tmp_path / "meter.bin"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(UserError, match="binary"):
        load_measured_csv(binary)
