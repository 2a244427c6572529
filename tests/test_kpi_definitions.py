"""The KPIs of contract section 3 from a schedule written by hand, each figure worked out by hand from
the contract's definitions: the 99 % fully-served rule (of the request, or of what the pile could
deliver in the window if less), violations beyond 0.1 kW of the site or a phase limit, peak-to-valley,
unmet energy, V2G discharge, import cost and the largest excess over a dispatch limit."""

from __future__ import annotations

import numpy as np
import pytest

from tests import contract
from tests.dispatch_builders import command
from youxu.sim.kpis import compute_kpis
from youxu.sim.scenario import Scenario

START = "2026-07-01T18:00:00+08:00"


def scenario() -> Scenario:
    """Four 15-minute steps, 99 kW of households (33 kW a phase), 120 kW site limit, 40 kW a phase; a
    dispatch limit of 115 kW for the last half hour."""
    sc = Scenario.model_validate({
        "format": "youxu.scenario/1", "name": "kpi-by-hand", "start": START, "step_s": 900, "duration_s": 3600,
        "site": {"transformer_kva": 150, "limit_kw": 120, "export_limit_kw": 0,
                 "phase_limit_kw": {"L1": 40, "L2": 40, "L3": 40}},
        "base_load": {"resolution_s": 900, "kw": [99.0, 99.0, 99.0, 99.0]},
        "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [0.5], "export_yuan_per_kwh": [0.3]},
        "piles": [
            {"id": "P1", "max_kw": 7.4, "min_kw": 1.4, "phases": 1, "phase": "L1", "v2g": True, "max_discharge_kw": 7},
            {"id": "P2", "max_kw": 7.4, "min_kw": 1.4, "phases": 1, "phase": "L2", "v2g": False, "max_discharge_kw": 0},
            {"id": "P3", "max_kw": 11.0, "min_kw": 4.1, "phases": 3, "v2g": False, "max_discharge_kw": 0},
        ],
        "sessions": [
            {"id": "A", "pile": "P1", "arrival_s": 0, "departure_s": 3600, "energy_kwh": 5.1, "battery_kwh": 60,
             "soc_arrival": 0.5, "v2g": True, "min_soc": 0.2, "priority": "normal"},
            {"id": "B", "pile": "P2", "arrival_s": 0, "departure_s": 3600, "energy_kwh": 1.8, "battery_kwh": 60,
             "soc_arrival": 0.5, "v2g": False, "min_soc": 0.2, "priority": "normal"},
            {"id": "C", "pile": "P3", "arrival_s": 1800, "departure_s": 3600, "energy_kwh": 10.0, "battery_kwh": 60,
             "soc_arrival": 0.5, "v2g": False, "min_soc": 0.2, "priority": "normal"},
        ],
        "dispatch": [],
    })
    t0 = sc.start.timestamp()
    raw = sc.model_dump(mode="json")
    raw["dispatch"] = [{"at_s": 1800, "command": command(t0 + 1800, minutes=30, import_max_kw=115.0)}]
    return Scenario.model_validate(raw)


# kW per step for each session while plugged in (A on L1, B on L2, C three-phase)
SCHEDULE = {"A": [7.06, 7.2, 7.0, -1.04], "B": [0.0, 0.0, 7.0, 0.0], "C": [None, None, 10.9, 11.0]}


def kpis() -> dict:
    sc = scenario()
    index = {s.id: i for i, s in enumerate(sc.sessions)}
    pile = {p.id: i for i, p in enumerate(sc.piles)}
    rows = [(k, index[sid], pile[sc.sessions[index[sid]].pile], kw)
            for sid, kws in SCHEDULE.items() for k, kw in enumerate(kws) if kw is not None]
    step, sess, pl, kw = (np.array(c) for c in zip(*rows, strict=True))
    return compute_kpis(sc, "by-hand", step.astype(int), sess.astype(int), pl.astype(int), kw.astype(float))


def test_kpis_worked_out_by_hand() -> None:
    k = kpis()
    assert set(k) >= set(contract.KPI_KEYS) and k["format"] == contract.KPI_FORMAT
    # totals per step: 99 + 7.06 = 106.06, 99 + 7.2 = 106.2, 99 + 7 + 7 + 10.9 = 123.9, 99 - 1.04 + 11 = 108.96
    assert k["peak_total_kw"] == pytest.approx(123.9)
    assert k["valley_total_kw"] == pytest.approx(106.06)
    assert k["peak_to_valley_kw"] == pytest.approx(17.84)
    assert k["peak_base_kw"] == pytest.approx(99.0)
    # step 0: L1 at 40.06, over by 0.06: within the 0.1 kW tolerance; step 1: L1 at 40.2, a phase violation
    # with the site total within its limit; step 2: the total 3.9 kW over (L1 and L2 at 43.63)
    assert k["limit_violation_steps"] == 2
    assert k["max_violation_kw"] == pytest.approx(3.9)
    # A: (7.06 + 7.2 + 7 - 1.04) / 4 = 5.055 kWh of 5.1, 99.1 %: served; B: 1.75 of 1.8, 97.2 %: not served;
    # C: 5.475 kWh of 10 asked, but its pile could give 11 kW x 0.5 h = 5.5 kWh in its window: 99.5 %, served
    assert k["sessions_total"] == 3 and k["sessions_fully_served"] == 2
    assert k["energy_requested_kwh"] == pytest.approx(16.9)
    assert k["energy_delivered_kwh"] == pytest.approx(12.28)
    assert k["unmet_energy_kwh"] == pytest.approx(0.045 + 0.05 + 4.525)
    assert k["v2g_discharged_kwh"] == pytest.approx(0.26)
    # imported energy (106.06 + 106.2 + 123.9 + 108.96) / 4 = 111.28 kWh at 0.5 yuan; nothing exported
    assert k["import_cost_yuan"] == pytest.approx(55.64)
    assert k["export_revenue_yuan"] == 0.0
    # the 115 kW dispatch limit holds in steps 2 and 3: 123.9 is 8.9 over it; no setpoint was sent
    assert k["dispatch_max_excess_kw"] == pytest.approx(8.9)
    assert k["dispatch_tracking_rmse_kw"] is None
