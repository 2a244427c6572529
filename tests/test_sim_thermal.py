"""Scenarios with `site.thermal` and `ambient_c`: the engine's thermal state, the KPIs, and mpc planning
against the hot-spot while the heuristics see only the kW cap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from youxu.config.errors import UserError
from youxu.scheduler import thermal
from youxu.sim.engine import run_scenario
from youxu.sim.kpis import compute_kpis
from youxu.sim.scenario import parse_scenario
from youxu.sim.thermal import initial_state, thermal_series

THERMAL = {"load_loss_w": 6200, "no_load_loss_w": 810}


def hot_evening(thermal_cfg: dict | None = THERMAL, ambient: list[float] | None = None, cars: int = 40,
                base_kw: float = 470.0, limit_kw: float = 567.0) -> dict:
    """630 kVA from 16:00 for 12 hours: a long hot evening of households, cars that can wait till morning."""
    n = 12 * 4
    t_h = 16.0 + np.arange(n) * 0.25
    base = [base_kw if 17 <= h < 23 else 0.6 * base_kw for h in t_h]
    amb = ambient if ambient is not None else [round(31 + 6 * np.cos(2 * np.pi * (h - 15) / 24), 2) for h in t_h]
    piles = [{"id": f"P{i:02d}", "max_kw": 7.0, "min_kw": 1.4, "phases": 1, "phase": ("L1", "L2", "L3")[i % 3]}
             for i in range(cars)]
    sessions = [{"id": f"S{i:02d}", "pile": f"P{i:02d}", "arrival_s": 3600, "departure_s": 12 * 3600 - 600,
                 "energy_kwh": 30.0, "battery_kwh": 60.0, "soc_arrival": 0.3} for i in range(cars)]
    raw = {"format": "youxu.scenario/1", "name": "hot-evening", "start": "2026-07-15T16:00:00+08:00",
           "step_s": 60, "duration_s": 12 * 3600,
           "site": {"transformer_kva": 630, "limit_kw": limit_kw, "export_limit_kw": 0},
           "base_load": {"resolution_s": 900, "kw": base},
           "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [0.5]},
           "piles": piles, "sessions": sessions, "ambient_c": {"resolution_s": 900, "c": amb}}
    if thermal_cfg is not None:
        raw["site"]["thermal"] = thermal_cfg
    return raw


def _kpis(sc, strategy: str) -> tuple[dict, object]:
    r = run_scenario(sc, strategy)
    return compute_kpis(sc, strategy, r.sched_step, r.sched_session, r.sched_pile, r.sched_kw, r.plan_ms,
                        r.fallbacks, series=r.series), r


def test_scenario_thermal_keys_are_checked():
    sc = parse_scenario(hot_evening({**THERMAL, "constants": {"tau_oil_min": 150}, "hotspot_max_c": 95}))
    p = sc.site.thermal_params()
    assert p.constants.tau_oil_min == 150 and p.hotspot_max_c == 95 and p.rated_kva == 630
    assert sc.ambient_per_step_c()[0] == pytest.approx(31 + 6 * np.cos(2 * np.pi / 24), abs=0.01)
    for bad, needle in [({**THERMAL, "constants": {"tau_oil": 1}}, "constants: unknown tau_oil"),
                        ({**THERMAL, "ambient": {"fixed_c": 3}}, "site.thermal.ambient"),
                        ({**THERMAL, "allow_above_rated": True}, "go together"),
                        ({**THERMAL, "allow_above_rated": True, "above_rated_max_kw": 500},
                         "above_rated_max_kw: 500.0 is not above limit_kw 567.0")]:
        with pytest.raises(UserError, match=needle):
            parse_scenario(hot_evening(bad))
    with pytest.raises(UserError, match="ambient_c: does not cover"):
        parse_scenario(hot_evening(ambient=[30.0, 31.0]))


def test_kpis_gain_thermal_keys_only_with_site_thermal():
    plain, _ = _kpis(parse_scenario(hot_evening(None)), "llf")
    assert not {"hotspot_max_c", "top_oil_max_c", "ageing_h"} & set(plain)
    sc = parse_scenario(hot_evening())
    k, r = _kpis(sc, "llf")
    top, hot, ageing_h = thermal_series(sc, r.series[2])
    assert k["hotspot_max_c"] == pytest.approx(hot.max(), abs=0.01)
    assert k["top_oil_max_c"] == pytest.approx(top.max(), abs=0.01)
    # ageing hours: the integral of the relative rate over the day, by hand
    rate = thermal.ageing_rate(hot)
    assert k["ageing_h"] == pytest.approx(float(rate.sum()) * 60 / 3600, rel=1e-3)
    assert k["ageing_h"] == pytest.approx(ageing_h, abs=1e-4)
    # the same figures whatever the strategy sees: llf is blind to the thermal section
    k_plain_limits, _ = _kpis(parse_scenario(hot_evening({**THERMAL, "hotspot_max_c": 160})), "llf")
    assert k_plain_limits["energy_delivered_kwh"] == k["energy_delivered_kwh"]
    p = sc.site.thermal_params()
    assert initial_state(sc, p).hotspot_c == pytest.approx(
        thermal.steady_state(p, p.load_factor(0.6 * 470.0), sc.ambient_per_step_c()[0]).hotspot_c)


def test_mpc_keeps_the_hotspot_within_its_limit_where_llf_does_not():
    """Cars that must leave at midnight: charging runs into the hot evening peak at the kW cap."""
    def evening(th: dict):
        raw = hot_evening(th)
        for s in raw["sessions"]:
            s["departure_s"] = 8 * 3600
        return parse_scenario(raw)

    sc = evening(THERMAL)
    llf, _ = _kpis(sc, "llf")
    assert llf["hotspot_max_c"] > 99.5  # the heuristics see only the kW cap
    blind, _ = _kpis(evening({**THERMAL, "hotspot_max_c": 160}), "mpc")
    assert blind["hotspot_max_c"] > 99.0  # the optimizer too, without the thermal limit
    mpc, r = _kpis(sc, "mpc")
    assert mpc["hotspot_max_c"] <= 98.0 + 0.1
    assert mpc["top_oil_max_c"] <= 105.0
    assert mpc["ageing_h"] < blind["ageing_h"]
    assert mpc["limit_violation_steps"] == 0
    # what the hot-spot limit costs: a few percent of the energy, no more
    assert mpc["energy_delivered_kwh"] >= 0.95 * blind["energy_delivered_kwh"]
    # the timeseries' limit is the thermal limit where it is tighter than the kW cap
    assert r.limit_kw.min() < 567.0 - 5.0


def test_above_rated_serves_more_on_a_cold_night_at_the_same_hotspot_limit():
    def winter(th: dict):
        raw = hot_evening(th, ambient=[-5.0] * 48, cars=90, base_kw=300.0)
        for s in raw["sessions"]:
            s["departure_s"] = 8 * 3600  # 90 cars, 30 kWh each, by midnight: more than the kW cap allows
        return parse_scenario(raw)

    capped, _ = _kpis(winter(THERMAL), "mpc")
    k, _ = _kpis(winter({**THERMAL, "allow_above_rated": True, "above_rated_max_kw": 750.0}), "mpc")
    assert k["energy_delivered_kwh"] > capped["energy_delivered_kwh"] + 50.0
    assert k["peak_total_kw"] > 567.0 + 20.0
    assert k["hotspot_max_c"] <= 98.0 + 0.2
    assert k["limit_violation_steps"] == 0  # counted against above_rated_max_kw
    assert json.loads(json.dumps(k))["ageing_h"] >= 0.0


def test_generate_writes_the_weather_the_homes_saw_as_ambient():
    from youxu.sim.generate import generate_scenario
    from youxu.sim.household import HouseholdModel
    from youxu.sim.presets import resolve_preset
    from youxu.sim.tou import LocalAxis

    for season, lo, hi in (("summer", 20.0, 36.0), ("winter", -13.0, 6.0)):
        sc = generate_scenario("old-community", season=season, seed=4, history_days=0, dispatch=False)
        amb = sc.ambient_per_step_c()
        assert amb.size == sc.n_steps and lo < amb.min() < amb.max() < hi
        # the 15-minute means of the temperature the household model ran on
        p, chosen = resolve_preset("old-community", season)
        from youxu.sim.generate import STREAM_HOMES, _rng

        model = HouseholdModel(p.household_params(p.households, chosen), _rng(4, STREAM_HOMES))
        temp = model.simulate(LocalAxis(p.start(chosen), sc.duration_s, 60)).temperature_c
        assert sc.ambient_c.c[:4] == [round(float(x), 2) for x in temp[:60].reshape(4, 15).mean(axis=1)]
        # the warmest quarter-hour is in the afternoon, local time
        warm = sc.start.timestamp() + 900 * int(np.argmax(sc.ambient_c.c))
        assert 12 <= (warm / 3600 + 8) % 24 <= 18


def test_report_and_compare_show_the_transformer_temperatures(tmp_path):
    from youxu.sim.compare import markdown_table as compare_table
    from youxu.sim.outputs import write_outputs
    from youxu.sim.report_text import CHART_HELP, THERMAL_KPI_LABELS

    sc = parse_scenario(hot_evening())
    res = run_scenario(sc, "llf")
    kpis = write_outputs(tmp_path, res)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for key, label in THERMAL_KPI_LABELS.items():
        assert f"<th>{label}</th><td class=num>{kpis[key]}</td>" in page
    def plain_text(x: str) -> str:
        return x.replace("<b>", "").replace("</b>", "")

    assert plain_text(CHART_HELP["thermal"]).split(".")[0] in plain_text(page)
    plain = parse_scenario(hot_evening(None))
    assert "Highest winding hot-spot" not in compare_table(plain, [write_outputs(tmp_path / "p", run_scenario(
        plain, "llf"))])
    assert f"| Highest winding hot-spot (°C) | {kpis['hotspot_max_c']} |" in compare_table(sc, [kpis])


def test_hosting_capacity_judged_by_the_thermal_limit():
    from youxu.sim.generate import scenario_at_penetration
    from youxu.sim.hosting import Step, hosting_step
    from youxu.sim.thermal import with_thermal_limit

    sc = with_thermal_limit(scenario_at_penetration("old-community", 1.0, seed=1))
    th = sc.site.thermal
    assert (th.no_load_loss_w, th.load_loss_w) == (480.0, 3650.0)  # 315 kVA
    assert th.allow_above_rated and th.above_rated_max_kw == round(1.5 * 0.95 * 315, 1)
    assert sc.site.phase_limit_kw["L1"] == round(99.2 * th.above_rated_max_kw / 283.5, 1)
    assert sc.ambient_c is not None  # the generator's winter weather
    _, step = hosting_step("small", 1, "mpc", 0.4, "thermal")
    assert step.hotspot_c is not None and step.hotspot_max_c == 98.0
    assert "hotspot_max_c" in step.to_json()
    hot = Step(penetration=1.0, evs=10, violations=0, served_fraction=1.0, peak_kw=1.0, hotspot_c=99.0,
               hotspot_max_c=98.0)
    assert not hot.hosted  # a fleet that overheats the winding is not hosted, whatever it was served
    _, plain = hosting_step("small", 1, "llf", 0.4)
    assert plain.hotspot_c is None and "hotspot_max_c" not in plain.to_json()


def test_hosting_capacity_rejects_an_unknown_limit():
    from tests.test_cli_errors import youxu

    r = youxu("sim", "hosting-capacity", "--preset", "small", "--strategies", "llf", "--limit", "fuse")
    assert r.returncode == 2 and "--limit" in r.stderr and "Traceback" not in r.stderr
