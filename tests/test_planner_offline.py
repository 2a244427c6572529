"""The offline yardstick on a small hand-made scenario: every step within the dead band and the limits."""

from __future__ import annotations

import numpy as np
import pytest

from youxu.sim.dispatch_arrays import scenario_dispatch_fn
from youxu.sim.offline import offline_schedule
from youxu.sim.physics import scenario_piles
from youxu.sim.scenario import parse_scenario

STEP = 60
HOURS = 4


def _command(kind: str, scope: str, start: str, end: str, **period: float) -> dict:
    return {"schema": "youxu.dispatch/1", "command_id": f"c-{kind}-{scope}-{start}", "issuer": "test", "seq": 1,
            "issued_at": "2026-07-01T17:55:00+08:00", "type": kind, "scope": scope, "priority": 1,
            "valid_from": start, "valid_until": end, "periods": [{"offset_s": 0, **period}]}


def scenario(dispatch: list[dict] | None = None) -> dict:
    # household load: 60 kW, a 100 kW hump from 19:00 to 20:00, then 40 kW (15-minute values)
    base = [60.0] * 4 + [100.0] * 4 + [40.0] * 8
    return {
        "format": "youxu.scenario/1", "name": "tiny", "start": "2026-07-01T18:00:00+08:00",
        "step_s": STEP, "duration_s": HOURS * 3600,
        "site": {"transformer_kva": 160, "limit_kw": 120.0, "export_limit_kw": 10.0,
                 "phase_limit_kw": {"L1": 42.0, "L2": 45.0, "L3": 45.0}},
        "base_load": {"resolution_s": 900, "kw": base},
        "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [0.6, 0.95, 0.6, 0.3]},
        "piles": [
            {"id": "P1", "max_kw": 7.0, "min_kw": 1.4, "phases": 1, "phase": "L1"},
            {"id": "P2", "max_kw": 7.0, "min_kw": 1.4, "phases": 1, "phase": "L1"},
            {"id": "P3", "max_kw": 11.0, "min_kw": 4.1, "phases": 3, "phase": None},
            {"id": "P4", "max_kw": 7.0, "min_kw": 1.4, "phases": 1, "phase": "L2", "v2g": True,
             "max_discharge_kw": 7.0},
        ],
        "sessions": [
            # arrives and leaves inside minutes, needs most of its window
            {"id": "S1", "pile": "P1", "arrival_s": 630, "departure_s": 7290, "energy_kwh": 11.0},
            {"id": "S2", "pile": "P2", "arrival_s": 0, "departure_s": 14400, "energy_kwh": 12.0},
            {"id": "S3", "pile": "P3", "arrival_s": 3000, "departure_s": 13000, "energy_kwh": 20.0,
             "max_kw": 7.4},
            {"id": "S4", "pile": "P4", "arrival_s": 0, "departure_s": 14400, "energy_kwh": 5.0, "battery_kwh": 50.0,
             "soc_arrival": 0.6, "v2g": True, "min_soc": 0.5},
            {"id": "S5", "pile": "P1", "arrival_s": 9000, "departure_s": 14000, "energy_kwh": 1.0},
        ],
        "dispatch": [{"at_s": 0, "command": c} for c in (dispatch or [])],
    }


def check(raw: dict) -> np.ndarray:
    sc = parse_scenario(raw)
    sched = offline_schedule(sc)
    n = sc.n_steps
    assert sched.shape == (len(sc.sessions), n)
    piles = scenario_piles(sc)
    pile_of = np.array([[p.id for p in sc.piles].index(s.pile) for s in sc.sessions])
    # the dead band at every step
    mn = piles.min_kw[pile_of][:, None]
    assert np.all((np.abs(sched) < 1e-9) | (np.abs(sched) >= mn - 1e-9))
    assert np.all(sched <= piles.max_kw[pile_of][:, None] + 1e-9)
    # nothing outside a session's steps (a car is plugged in from the first step start after it arrives)
    t = sc.step_times_s()
    for i, s in enumerate(sc.sessions):
        outside = (t < s.arrival_s) | (t >= s.departure_s)
        assert np.all(sched[i, outside] == 0.0), s.id
        if s.max_kw:
            assert np.all(sched[i] <= s.max_kw + 1e-9)
    # every limit at every step
    pile_kw = np.zeros((n, piles.n))
    np.add.at(pile_kw.T, pile_of, sched)
    base_ph = sc.base_phase_kw()
    total = base_ph.sum(axis=1) + pile_kw.sum(axis=1)
    d = scenario_dispatch_fn(sc)(sc.start.timestamp() + t)
    assert np.all(total <= np.minimum(sc.site.limit_kw, d.site_import_max_kw) + 1e-6)
    assert np.all(-total <= np.minimum(sc.site.export_limit_kw, d.site_export_max_kw) + 1e-6)
    assert np.all(pile_kw.sum(axis=1) <= d.ev_import_max_kw + 1e-6)
    assert np.all(base_ph + pile_kw @ piles.phase_share <= sc.phase_limits_kw() + 1e-6)
    return sched


def delivered(sched: np.ndarray, sc_raw: dict) -> np.ndarray:
    sc = parse_scenario(sc_raw)
    dt_h = STEP / 3600.0
    t = sc.step_times_s()
    out = []
    for i, s in enumerate(sc.sessions):
        stay = np.clip((s.departure_s - t) / STEP, 0.0, 1.0)  # the last step counts until departure
        out.append(float((sched[i] * stay).sum() * dt_h))
    return np.array(out)


def test_offline_schedule_keeps_every_step_within_limits_and_serves_everyone():
    raw = scenario()
    sched = check(raw)
    got = delivered(sched, raw)
    want = np.array([s["energy_kwh"] for s in raw["sessions"]])
    assert got == pytest.approx(want, abs=0.05)


def test_offline_avoids_the_household_peak_and_the_dear_hour():
    raw = scenario()
    sched = check(raw)
    hump = slice(60, 120)  # 19:00-20:00, the household peak and the peak tariff
    # only the car that must (S1 needs most of its window) and the V2G car helping may draw there
    assert sched[1, hump].sum() == 0.0  # S2 can wait until the night
    assert sched[3, hump].max() <= 0.0  # S4 gives back rather than charges


def test_offline_keeps_a_dispatch_limit():
    # 60 kW of homes then: 6 kW left for the cars from 18:15 to 19:00
    lim = _command("limit", "site", "2026-07-01T18:15:00+08:00", "2026-07-01T19:00:00+08:00", import_max_kw=66.0)
    ev = _command("limit", "ev", "2026-07-01T20:00:00+08:00", "2026-07-01T21:00:00+08:00", import_max_kw=5.0)
    sched = check(scenario([lim, ev]))
    assert sched[:, 15:60].sum(axis=0).max() <= 6.0 + 1e-9
    assert sched[:, 15:60].sum(axis=0).max() > 1.0  # the room is used, not avoided
    assert sched[:, 120:180].sum(axis=0).max() <= 5.0 + 1e-9


def test_offline_follows_a_site_setpoint():
    sp = _command("setpoint", "site", "2026-07-01T20:30:00+08:00", "2026-07-01T21:00:00+08:00", setpoint_kw=58.0)
    raw = scenario([sp])
    sched = check(raw)
    sc = parse_scenario(raw)
    total = sc.base_kw()[150:180] + sched[:, 150:180].sum(axis=0)
    # 40 kW of homes: the EVs make up 18 kW (within a car's minimum of rounding)
    assert np.abs(total - 58.0).mean() < 1.5


def test_offline_v2g_stays_above_its_floor():
    raw = scenario()
    sched = check(raw)
    soc = 0.6 + np.cumsum(sched[3]) * STEP / 3600.0 / 50.0
    assert soc.min() >= 0.5 - 1e-6
