"""The perfect-foresight front (contract section 6): lowest peak at a cost cap, cheapest plan at a peak cap."""

from __future__ import annotations

import numpy as np
import pytest

from youxu.scheduler.lp_front import front_point
from youxu.sim.engine import run_scenario
from youxu.sim.kpis import compute_kpis
from youxu.sim.offline import front_problem, pareto
from youxu.sim.outputs import result_kpis
from youxu.sim.scenario import parse_scenario

STEP = 900


def two_hours(energy_kwh: float = 8.0, v2g: bool = False) -> dict:
    """Homes at 50 kW for an hour at 1.0 yuan/kWh, then 60 kW at 0.5; one 7 kW car there for both hours."""
    return {
        "format": "youxu.scenario/1", "name": "two-hours", "start": "2026-01-14T20:00:00+08:00",
        "step_s": STEP, "duration_s": 7200,
        "site": {"transformer_kva": 100, "limit_kw": 90.0, "export_limit_kw": 10.0, "phase_limit_kw": None},
        "base_load": {"resolution_s": 3600, "kw": [50.0, 60.0]},
        "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [1.0, 0.5], "export_yuan_per_kwh": [0.8, 0.2]},
        "piles": [{"id": "P1", "max_kw": 7.0, "min_kw": 1.4, "phases": 3, "phase": None, "v2g": v2g,
                   "max_discharge_kw": 7.0 if v2g else 0.0}],
        "sessions": [{"id": "S1", "pile": "P1", "arrival_s": 0, "departure_s": 7200, "energy_kwh": energy_kwh,
                      "battery_kwh": 60.0, "soc_arrival": 0.5, "v2g": v2g, "min_soc": 0.2}],
        "dispatch": [],
    }


def test_ev_cost_counts_charging_at_the_import_price_and_discharge_at_the_export_price() -> None:
    sc = parse_scenario(two_hours(v2g=True))
    # 4 kW through the first hour (1.0 yuan), -2 kW through the second (given back at 0.2 yuan)
    step = np.arange(8, dtype=np.int32)
    kw = np.array([4.0] * 4 + [-2.0] * 4)
    k = compute_kpis(sc, "hand", step, np.zeros(8, dtype=np.int32), np.zeros(8, dtype=np.int32), kw)
    assert k["ev_cost_yuan"] == pytest.approx(4.0 * 1.0 - 2.0 * 0.2)
    assert k["import_cost_yuan"] == pytest.approx(54.0 * 1.0 + 58.0 * 0.5)  # the site's bill, households included


def test_front_trades_peak_against_cost_as_worked_out_by_hand() -> None:
    # 8 kWh: a in the first hour, b = 8 - a in the second, a, b <= 7. Peak max(50 + a, 60 + b), cost a + b / 2.
    sc = parse_scenario(two_hours())
    grid, prob = front_problem(sc)
    cheapest = front_point(grid, prob, 8.0, peak_cap_kw=1e9)  # a = 1, b = 7
    assert cheapest.ev_cost_yuan == pytest.approx(4.5, abs=1e-6)
    assert cheapest.peak_kw == pytest.approx(67.0, abs=1e-6)
    flattest = front_point(grid, prob, 8.0, cost_cap_yuan=1e9)  # a = 7, b = 1
    assert flattest.peak_kw == pytest.approx(61.0, abs=1e-6)
    # in between: a cost of 6 yuan allows a = b = 4, peak 64; a peak of 64 costs at least 6 yuan
    assert front_point(grid, prob, 8.0, cost_cap_yuan=6.0).peak_kw == pytest.approx(64.0, abs=1e-6)
    assert front_point(grid, prob, 8.0, peak_cap_kw=64.0).ev_cost_yuan == pytest.approx(6.0, abs=1e-6)
    # a cap no plan can keep is carried by the slack and said so
    tight = front_point(grid, prob, 8.0, peak_cap_kw=58.0)
    assert tight.cap_over == pytest.approx(3.0, abs=1e-6) and tight.energy_short_kwh == pytest.approx(0.0, abs=1e-9)


def test_pareto_of_runs_is_one_on_the_front_and_above_it_elsewhere() -> None:
    sc = parse_scenario(two_hours())
    offline = result_kpis(run_scenario(sc, "offline"))
    front = pareto(sc, offline)
    assert set(front) == {"peak_at_same_cost_kw", "cost_at_same_peak_yuan", "peak_gap", "cost_gap"}
    # the front is the LP's, without the piles' dead band: the offline run (1 kWh through the dead band of a
    # 1.4 kW minimum in the second hour) sits just off it, never below it
    assert 1.0 - 1e-3 <= front["peak_gap"] <= 1.02
    assert 1.0 - 1e-3 <= front["cost_gap"] <= 1.05
    # a plan off the front: 4.5 kWh in the first hour, 3.5 kWh in the second at full power in half of it
    kw = np.array([7.0, 7.0, 4.0, 0.0, 7.0, 7.0, 0.0, 0.0])
    step = np.arange(8, dtype=np.int32)
    hand = compute_kpis(sc, "hand", step, np.zeros(8, dtype=np.int32), np.zeros(8, dtype=np.int32), kw)
    assert (hand["peak_total_kw"], hand["ev_cost_yuan"]) == (pytest.approx(67.0), pytest.approx(6.25))
    front = pareto(sc, hand)
    # for 6.25 yuan: a = 4.5, b = 3.5 spread over the hour, peak 63.5; with a peak of 67: a = 1, b = 7, 4.5 yuan
    assert front["peak_at_same_cost_kw"] == pytest.approx(63.5, abs=1e-3)
    assert front["cost_at_same_peak_yuan"] == pytest.approx(4.5, abs=1e-3)
    assert front["peak_gap"] == pytest.approx(67.0 / 63.5, abs=1e-4)
    assert front["cost_gap"] == pytest.approx(6.25 / 4.5, abs=1e-4)
