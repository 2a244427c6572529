"""Simulator outputs and the shortcuts that make long runs fast give what the plain definitions give."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests import contract
from youxu.controller.gridlink import DispatchLimits
from youxu.sim.dispatch_arrays import scenario_dispatch_fn
from youxu.sim.engine import PiecewiseDispatch, RunResult, make_controller, run_scenario, tariff_fn
from youxu.sim.generate import generate_scenario
from youxu.sim.kpis import site_series
from youxu.sim.outputs import write_schedule, write_timeseries
from youxu.sim.physics import PlugTimeline, SitePhysics, scenario_piles
from youxu.sim.scenario import Scenario


@pytest.fixture(scope="module")
def run() -> RunResult:
    sc = generate_scenario("small", seed=3, households=60, piles=12, penetration=0.6)  # a day with dispatch
    return run_scenario(sc, "llf")


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_schedule_has_a_row_per_session_per_step_plugged_in(run: RunResult, tmp_path: Path) -> None:
    sc = run.scenario
    write_schedule(tmp_path / "schedule.csv", sc, run)
    assert (tmp_path / "schedule.csv").read_text().splitlines()[0] == contract.SCHEDULE_HEADER
    rows = read_rows(tmp_path / "schedule.csv")
    expected = {(t, s.id, s.pile) for s in sc.sessions
                for t in range(0, sc.duration_s, sc.step_s) if s.arrival_s <= t < s.departure_s}
    assert {(int(r["t_s"]), r["session_id"], r["pile_id"]) for r in rows} == expected
    assert len(rows) == len(expected)
    pile_index = {p.id: i for i, p in enumerate(sc.piles)}
    keys = [(int(r["t_s"]), pile_index[r["pile_id"]]) for r in rows]
    assert keys == sorted(keys)  # by step, then pile
    delivered: dict[str, float] = {}
    for r in rows:
        delivered[r["session_id"]] = delivered.get(r["session_id"], 0.0) + float(r["kw"]) * sc.step_s / 3600
    for i, s in enumerate(sc.sessions):
        assert delivered[s.id] == pytest.approx(run.delivered_kwh[i], abs=1e-3 * (1 + s.departure_s / 3600))


def test_schedule_rows_in_any_order_are_written_by_step_then_pile(run: RunResult, tmp_path: Path) -> None:
    perm = np.random.default_rng(0).permutation(run.sched_kw.size)
    shuffled = dataclasses.replace(run, sched_step=run.sched_step[perm], sched_session=run.sched_session[perm],
                                   sched_pile=run.sched_pile[perm], sched_kw=run.sched_kw[perm])
    write_schedule(tmp_path / "a.csv", run.scenario, run)
    write_schedule(tmp_path / "b.csv", run.scenario, shuffled)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_timeseries_adds_up(run: RunResult, tmp_path: Path) -> None:
    sc = run.scenario
    write_timeseries(tmp_path / "timeseries.csv", sc, run)
    assert (tmp_path / "timeseries.csv").read_text().splitlines()[0] == contract.TIMESERIES_HEADER
    rows = read_rows(tmp_path / "timeseries.csv")
    assert [int(r["t_s"]) for r in rows] == list(range(0, sc.duration_s, sc.step_s))
    base = np.array([float(r["base_kw"]) for r in rows])
    ev = np.array([float(r["ev_kw"]) for r in rows])
    total = np.array([float(r["total_kw"]) for r in rows])
    np.testing.assert_allclose(base + ev, total, atol=2e-3)
    np.testing.assert_allclose(base, sc.base_kw(), atol=5e-4)
    np.testing.assert_allclose([float(r["limit_kw"]) for r in rows], run.limit_kw, atol=5e-4)
    np.testing.assert_allclose([float(r["import_price"]) for r in rows], sc.import_price(), atol=5e-5)


def test_per_step_sums_equal_the_steps_by_piles_matrix(run: RunResult) -> None:
    sc = run.scenario
    matrix = np.zeros((sc.n_steps, len(sc.piles)))
    np.add.at(matrix, (run.sched_step, run.sched_pile), run.sched_kw)
    _, ev, total, phase = site_series(sc, run.sched_step, run.sched_pile, run.sched_kw)
    np.testing.assert_allclose(ev, matrix.sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(total, sc.base_kw() + matrix.sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(phase, sc.base_phase_kw() + matrix @ scenario_piles(sc).phase_share, atol=1e-9)


def assert_same_limits(a: DispatchLimits, b: DispatchLimits) -> None:
    for f in ("site_import_max_kw", "site_export_max_kw", "ev_import_max_kw", "ev_export_max_kw", "setpoint_kw"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.setpoint_scope == b.setpoint_scope
    assert a.active_command_ids == b.active_command_ids


def dispatch_scenario() -> Scenario:
    return generate_scenario("community-630", seed=2, households=120, piles=20)


def test_memoised_dispatch_equals_the_arbitration_at_every_time() -> None:
    sc = dispatch_scenario()
    assert sc.dispatch
    memo, plain = PiecewiseDispatch(sc), scenario_dispatch_fn(sc)
    t0 = sc.start.timestamp()
    edges = memo._edges_s
    times = np.concatenate([t0 + sc.step_times_s(), edges, edges - 1e-3, edges + 1e-3])
    for t in times:
        assert_same_limits(memo(np.array([t])), plain(np.array([t])))
    horizon = t0 + np.arange(0.0, sc.duration_s, 900.0)
    assert_same_limits(memo(horizon), plain(horizon))
    with pytest.raises(ValueError):
        memo(np.array([t0])).site_import_max_kw[0] = 0.0  # shared between calls: read-only


def test_tariff_at_one_time_equals_the_array_lookup() -> None:
    sc = dispatch_scenario()
    prices = tariff_fn(sc)
    t = sc.start.timestamp() + np.array([-60.0, 0.0, 899.0, 900.0, 3600 * 5 + 1, sc.duration_s + 7200.0])
    imp, exp = prices(t)
    for k in range(t.size):
        one_imp, one_exp = prices(t[k:k + 1])
        assert one_imp.shape == (1,) and one_imp[0] == imp[k] and one_exp[0] == exp[k]


def test_a_long_run_streams_the_same_schedule(run: RunResult, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import youxu.sim.outputs

    monkeypatch.setattr(youxu.sim.outputs, "STREAM_MIN_ROWS", 0)  # stream even this small run
    _, kpis = youxu.sim.outputs.run_and_write(run.scenario, "llf", tmp_path / "streamed")
    write_schedule(tmp_path / "inline.csv", run.scenario, run)
    assert (tmp_path / "streamed" / "schedule.csv").read_bytes() == (tmp_path / "inline.csv").read_bytes()
    assert kpis["energy_delivered_kwh"] == pytest.approx(float(run.delivered_kwh.sum()), abs=1e-2)
    assert {p.name for p in (tmp_path / "streamed").iterdir()} == set(contract.SIM_OUTPUT_FILES)
    assert set(contract.KPI_KEYS) <= set(kpis) and kpis["format"] == contract.KPI_FORMAT


def test_the_plug_timeline_follows_arrivals_and_departures() -> None:
    sc = generate_scenario("community-630", seed=4, households=150, piles=25, days=2)
    raw = sc.model_dump(mode="json")
    pile = raw["piles"][0]["id"]
    raw["sessions"] = [s for s in raw["sessions"] if s["pile"] != pile] + [
        {"id": "back1", "pile": pile, "arrival_s": 600, "departure_s": 1200, "energy_kwh": 1.0},
        {"id": "back2", "pile": pile, "arrival_s": 1200, "departure_s": 1830, "energy_kwh": 1.0},  # same minute
        {"id": "blink", "pile": pile, "arrival_s": 1850, "departure_s": 1870, "energy_kwh": 0.1},  # between steps
        {"id": "late", "pile": pile, "arrival_s": 1890, "departure_s": 1900, "energy_kwh": 0.1},
        {"id": "alone", "pile": pile, "arrival_s": 2410, "departure_s": 2450, "energy_kwh": 0.1},  # nobody else
    ]
    sc = Scenario.model_validate(raw)
    phys = SitePhysics(sc)
    plugs = PlugTimeline(phys)
    handed: np.ndarray | None = None
    seen = np.zeros(0)
    for t in sc.step_times_s():
        active = plugs.at(float(t))
        np.testing.assert_array_equal(active, phys.active_sessions(float(t)))
        # the same array while nobody comes or goes (and it never changes), a new one when somebody does
        assert np.array_equal(seen, active) == (active is handed)
        handed, seen = active, active.copy()
    with pytest.raises(ValueError):
        plugs.at(0.0)


def test_mpc_forecast_starts_from_the_meter_history_and_never_from_the_day_it_plays():
    sc = generate_scenario("small", history_days=2)
    t_hist, hist = sc.history_phase_kw()
    forecaster = make_controller(sc, "mpc", SitePhysics(sc)).planner.forecaster
    assert forecaster.last_t_s == sc.epoch_s(float(t_hist[-1])) < sc.epoch_s(0.0)  # the past only
    # the evening ahead is forecast from the two evenings before, not from the built-in default shape
    ends = sc.epoch_s(0.0) + 900.0 * np.arange(1, 97)
    fc, _ = forecaster.forecast(ends, np.full(96, 900.0))
    past_days = hist.sum(axis=1).reshape(2, 96)  # noon to noon, as the forecast steps
    far = slice(24, 96)  # beyond the fading of the last reading's deviation
    assert np.abs(fc[far] - past_days.mean(axis=0)[far]).max() < 0.15 * past_days.max()
    cold = make_controller(generate_scenario("small", history_days=0), "mpc", SitePhysics(sc)).planner.forecaster
    assert cold.last_t_s is None
