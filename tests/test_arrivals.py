"""The arrival model: the cars still to come, learnt from the sessions seen, with priors for a cold start."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from youxu.scheduler.arrivals import ArrivalModel
from youxu.scheduler.model import Piles, Sessions, phase_matrix

NOON = 1768363200.0  # 2026-01-14 12:00 local (UTC+8)


def piles(n: int) -> Piles:
    ph = [("L1", "L2", "L3")[i % 3] for i in range(n)]
    return Piles(ids=tuple(f"P{i}" for i in range(n)), max_kw=np.full(n, 7.0), min_kw=np.full(n, 1.4),
                 phase_share=phase_matrix(ph, [1] * n), v2g=np.zeros(n, dtype=bool), max_discharge_kw=np.zeros(n))


def with_cars(n: int, plugged: dict[int, tuple[str, float, float, float]]) -> Sessions:
    s = Sessions.empty(n)
    active = s.active.copy()
    ids = list(s.ids)
    arr, dep, req = s.arrival_s.copy(), s.departure_s.copy(), s.energy_requested_kwh.copy()
    for i, (sid, a, d, e) in plugged.items():
        active[i], ids[i], arr[i], dep[i], req[i] = True, sid, a, d, e
    return replace(s, active=active, ids=tuple(ids), arrival_s=arr, departure_s=dep, energy_requested_kwh=req)


def test_cold_start_expects_the_evening_arrivals_on_the_idle_piles_of_each_phase():
    m = ArrivalModel()
    p = piles(30)
    s = with_cars(30, {0: ("S0", NOON, NOON + 3600, 5.0)})
    m.observe(NOON, s)
    e = m.expected(NOON, NOON + 86400, p, s, np.ones(30, dtype=bool))
    assert e.n > 0 and set(e.pile.tolist()) <= set(range(1, 30))  # idle piles only
    hour = ((e.start_s - NOON) / 3600.0 + 12.0) % 24.0
    evening = (hour >= 16) & (hour < 22)
    assert e.energy_kwh[evening].sum() > 1.3 * e.energy_kwh[~evening].sum()  # six evening hours: most of it
    # each idle pile is expected at most once over the day (and the prior: about 0.8 sessions per pile and day)
    assert e.energy_kwh.sum() / m.energy_kwh() <= 29 + 1e-9
    assert e.energy_kwh.sum() / m.energy_kwh() == pytest.approx(29 * 0.8, rel=0.25)
    # evening cars stay the night, into the next morning
    assert np.all(e.end_s[evening] - e.start_s[evening] > 8 * 3600)
    assert np.all(e.end_s <= NOON + 86400)


def test_it_learns_from_the_sessions_it_sees():
    p = piles(30)
    cold = ArrivalModel()
    m = ArrivalModel()
    t = NOON
    s = with_cars(30, {})
    for day in range(3):  # three days on which ten cars came at 13:00 for an hour with 30 kWh each
        for k in range(24 * 4):
            t = NOON + day * 86400 + k * 900
            plugged = {i: (f"D{day}C{i}", NOON + day * 86400 + 3600, NOON + day * 86400 + 7200, 30.0)
                       for i in range(10)} if 3600 <= k * 900 < 7200 else {}
            s = with_cars(30, plugged)
            m.observe(t, s)
    assert m.energy_kwh() > 20.0  # the prior was 10
    assert m.hazard()[13] > 2 * cold.hazard()[13]
    assert m.stay_h()[13] < 2.0 < cold.stay_h()[13]
    assert m.hazard()[18] < cold.hazard()[18]  # no car ever came at six
    next_noon = NOON + 3 * 86400
    e = m.expected(next_noon, next_noon + 6 * 3600, p, with_cars(30, {}), np.ones(30, dtype=bool))
    at_13 = np.isclose(((e.start_s - next_noon) // 3600), 1)
    assert e.energy_kwh[at_13].sum() > e.energy_kwh[~at_13].sum()


def test_a_broken_arrival_model_leaves_the_planner_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.scenarios import small_site
    from youxu.sim.engine import run_scenario
    from youxu.sim.outputs import result_kpis

    sc = small_site(n_piles=6, hours=4, energy_kwh=12.0, phase_limit_kw=60.0)
    good = result_kpis(run_scenario(sc, "mpc"))

    def broken(*_args: object, **_kw: object) -> None:
        raise ValueError("no history")

    monkeypatch.setattr(ArrivalModel, "observe", broken)
    monkeypatch.setattr(ArrivalModel, "expected", broken)
    k = result_kpis(run_scenario(sc, "mpc"))
    assert k["plan_fallbacks"] == 0 and k["limit_violation_steps"] == 0
    assert k["sessions_fully_served"] == k["sessions_total"] == good["sessions_fully_served"]
