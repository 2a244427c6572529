"""The planner's LP on hand-made sites whose optimum is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.planner_fixtures import T0, Car, Site
from youxu.scheduler.lp_build import build_lp
from youxu.scheduler.model import Plan, PlanInput
from youxu.scheduler.planner import MPC_WEIGHTS, mpc_problem, plan_mpc
from youxu.scheduler.rolling import step_grid

TOL = 1e-6


def presence(inp: PlanInput) -> np.ndarray:
    """(n, H) share of each step each pile's car is plugged in (the plan is kW while plugged in)."""
    starts = inp.t0_s + np.cumsum(inp.step_s) - inp.step_s
    left = inp.sessions.departure_s[:, None] - starts[None, :]
    return np.clip(left / inp.step_s[None, :], 0.0, 1.0) * inp.sessions.active[:, None]


def check_limits(inp: PlanInput, plan: Plan) -> None:
    """Every hard limit of the input holds at every step of the plan (on the step's average)."""
    assert np.all(plan.power_kw[presence(inp) == 0] == 0.0)
    p = plan.power_kw * presence(inp)
    dt_h = inp.step_s / 3600.0
    ev = p.sum(axis=0)
    assert np.all(inp.base_kw + ev <= inp.import_limit_kw + TOL)
    assert np.all(-(inp.base_kw + ev) <= inp.export_limit_kw + TOL)
    assert np.all(ev <= inp.ev_import_limit_kw + TOL)
    assert np.all(-ev <= inp.ev_export_limit_kw + TOL)
    if inp.phase_limit_kw is not None:
        assert np.all(inp.base_phase_kw + p.T @ inp.piles.phase_share <= inp.phase_limit_kw + TOL)
    assert np.all(plan.power_kw <= inp.piles.max_kw[:, None] + TOL)
    may_discharge = inp.piles.v2g & inp.sessions.v2g
    assert np.all(p[~may_discharge] >= -TOL)
    assert np.all(-plan.power_kw <= inp.piles.max_discharge_kw[:, None] + TOL)
    # nothing beyond what was asked
    assert np.all(p @ dt_h <= inp.sessions.remaining_kwh + 1e-6)


def solve(site: Site) -> tuple[PlanInput, Plan]:
    inp = site.input()
    plan = plan_mpc(inp, 5000.0)
    assert plan.status == "optimal", plan.status
    assert not plan.fallback
    check_limits(inp, plan)
    return inp, plan


def test_peak_shaving_fills_the_valley_to_a_flat_total():
    site = Site(base_kw=[100, 60, 40, 80], cars=[Car(0, 50, 4, max_kw=50), Car(1, 30, 4, max_kw=50)], pile_max_kw=50)
    inp, plan = solve(site)
    total = inp.base_kw + plan.power_kw.sum(axis=0)
    # 80 kWh on top of 180 kWh of household load in steps 1-3: flat at 260/3 kW, nothing in the peak step
    assert plan.power_kw[:, 0] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert total[1:] == pytest.approx(np.full(3, 260.0 / 3.0), abs=1e-4)


def test_energy_is_delivered_before_departure():
    # leaves after 2 h wanting 10 kWh at 7 kW: both hours are needed although they are the expensive ones
    site = Site(base_kw=[80, 80, 10, 10], cars=[Car(0, 10, 2)], price=[1.0, 1.0, 0.1, 0.1])
    _, plan = solve(site)
    assert plan.power_kw[0, :2].sum() == pytest.approx(10.0, abs=1e-6)
    assert plan.power_kw[0, 2:] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert plan.info["unmet_kwh"] == pytest.approx(0.0, abs=1e-6)


def test_departure_inside_a_step_uses_only_the_time_the_car_is_there():
    site = Site(base_kw=[10, 10, 10], cars=[Car(0, 20, 2.5)])  # 2.5 h at 7 kW = 17.5 kWh at most
    _, plan = solve(site)
    # full power in the last half hour too: the plan is the power while the car is plugged in
    assert plan.power_kw[0] == pytest.approx([7.0, 7.0, 7.0], abs=1e-6)
    assert plan.info["unmet_kwh"] == pytest.approx(2.5, abs=1e-6)


def test_v2g_discharges_at_the_expensive_peak_but_never_below_the_soc_floor():
    # 50 kWh battery at 50 %, floor 40 %: at most 5 kWh out; 10 kWh wanted by the end, 7 kW charging;
    # the household peak (60 kW) falls in the dear hours
    site = Site(base_kw=[60, 60, 40, 40], cars=[Car(0, 10, 4, v2g=True, battery_kwh=50, soc=0.5, min_soc=0.4)],
                v2g_piles=True, price=[1.0, 1.0, 0.2, 0.2], export_limit_kw=100)
    inp, plan = solve(site)
    p = plan.power_kw[0]
    soc_kwh = 25.0 + np.cumsum(p)
    assert soc_kwh.min() >= 20.0 - 1e-6
    assert soc_kwh.max() <= 50.0 + 1e-6
    assert p.sum() == pytest.approx(10.0, abs=1e-6)  # the departure energy still arrives
    # recharging 14 kWh in the cheap hours covers 10 kWh plus 4 kWh discharged in the dear ones,
    # shared between them: the peak falls from 60 to 58 kW
    assert p[:2] == pytest.approx([-2.0, -2.0], abs=1e-6)
    assert (inp.base_kw + p).max() == pytest.approx(58.0, abs=1e-6)


def test_v2g_does_not_trade_a_higher_peak_for_arbitrage():
    # a flat household load: discharging in the dear hours would need 7 kW of recharging on top of it later
    site = Site(base_kw=[50, 50, 50, 50], cars=[Car(0, 10, 4, v2g=True, battery_kwh=50, soc=0.5, min_soc=0.4)],
                v2g_piles=True, price=[1.0, 1.0, 0.2, 0.2], export_limit_kw=100)
    inp, plan = solve(site)
    assert plan.power_kw[0] == pytest.approx([2.5, 2.5, 2.5, 2.5], abs=1e-6)
    assert (inp.base_kw + plan.power_kw[0]).max() == pytest.approx(52.5, abs=1e-6)


def test_no_discharge_without_the_drivers_consent_or_below_the_floor():
    site = Site(base_kw=[50, 50, 50, 50], cars=[Car(0, 10, 4, v2g=False), Car(1, 10, 4, v2g=True, soc=0.19)],
                v2g_piles=True, price=[1.0, 1.0, 0.2, 0.2], export_limit_kw=100)
    _, plan = solve(site)
    assert plan.power_kw.min() >= -TOL  # car 0 did not consent, car 1 is below its floor already


def test_site_import_limit_and_ev_dispatch_limit_hold():
    cars = [Car(i, 14, 2) for i in range(4)]  # all four want full power in both hours
    site = Site(base_kw=[100, 100], cars=cars, import_limit_kw=[120, 200], ev_import_limit_kw=[np.inf, 21.0])
    _, plan = solve(site)
    ev = plan.power_kw.sum(axis=0)
    assert ev == pytest.approx([20.0, 21.0], abs=1e-6)  # the limits bind, the rest is unmet
    assert plan.info["unmet_kwh"] == pytest.approx(56.0 - 41.0, abs=1e-5)


def test_phase_limit_holds_per_phase():
    # three piles on L1, one on L2; L1 has 10 kW of room, L2 plenty
    site = Site(base_kw=[30], cars=[Car(i, 7, 1) for i in range(4)], phases=["L1", "L1", "L1", "L2"],
                phase_limit_kw=[20.0, 100.0, 100.0])
    _, plan = solve(site)
    assert plan.power_kw[:3, 0].sum() == pytest.approx(10.0, abs=1e-6)
    assert plan.power_kw[3, 0] == pytest.approx(7.0, abs=1e-6)


def test_ev_setpoint_is_tracked_where_possible_and_never_breaks_a_limit():
    cars = [Car(i, 20, 4) for i in range(4)]  # 80 kWh wanted, 28 kW at most
    site = Site(base_kw=[10, 10, 10, 10], cars=cars, setpoint_kw=[15.0, 40.0, np.nan, np.nan],
                ev_import_limit_kw=[np.inf, 25.0, np.inf, np.inf])
    _, plan = solve(site)
    ev = plan.power_kw.sum(axis=0)
    assert ev[0] == pytest.approx(15.0, abs=1e-6)
    assert ev[1] == pytest.approx(25.0, abs=1e-6)  # the setpoint asks for 40, the dispatch limit says 25
    assert ev.sum() == pytest.approx(80.0, abs=1e-5)  # and the energy still arrives


def test_setpoint_never_costs_a_car_its_departure_energy():
    site = Site(base_kw=[10, 10], cars=[Car(0, 14, 2)], setpoint_kw=[0.0, 0.0])
    _, plan = solve(site)
    assert plan.power_kw[0] == pytest.approx([7.0, 7.0], abs=1e-6)


def test_site_setpoint_tracks_the_transformer_total():
    site = Site(base_kw=[50, 50], cars=[Car(0, 5, 2), Car(1, 5, 2)], setpoint_kw=[55.0, 55.0],
                setpoint_scope="site")
    inp, plan = solve(site)
    assert (inp.base_kw + plan.power_kw.sum(axis=0)) == pytest.approx([55.0, 55.0], abs=1e-6)


def test_urgent_session_first_and_at_full_power():
    # room for 7 kW in the first hour only; the normal car could wait, the urgent one goes first
    site = Site(base_kw=[93, 93, 80], cars=[Car(0, 7, 3), Car(1, 7, 3, urgent=True)], import_limit_kw=[100, 100, 110])
    _, plan = solve(site)
    assert plan.power_kw[1, 0] == pytest.approx(7.0, abs=1e-6)
    assert plan.power_kw[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_urgent_energy_wins_when_not_everyone_can_be_served():
    site = Site(base_kw=[93], cars=[Car(0, 7, 1), Car(1, 7, 1, urgent=True)], import_limit_kw=[100])
    _, plan = solve(site)
    assert plan.power_kw[:, 0] == pytest.approx([0.0, 7.0], abs=1e-6)


def test_shortage_is_shared_fairly_between_equal_sessions():
    # 20 kWh for three cars that want 10 each: no car is starved for the others
    site = Site(base_kw=[0, 0], cars=[Car(i, 10, 2) for i in range(3)], ev_import_limit_kw=[10.0, 10.0])
    _, plan = solve(site)
    got = plan.power_kw.sum(axis=1)
    assert got == pytest.approx([20.0 / 3.0] * 3, abs=1e-4)


def test_offline_pile_gets_nothing_and_its_car_is_not_planned():
    site = Site(base_kw=[10], cars=[Car(0, 7, 1), Car(1, 7, 1)], online=[True, False])
    _, plan = solve(site)
    assert plan.power_kw[:, 0] == pytest.approx([7.0, 0.0], abs=1e-9)


def test_car_staying_beyond_the_horizon_gets_at_least_what_it_cannot_get_later():
    # 21 kWh, leaves after 4 h, horizon 2 h: 14 kWh fit after the horizon, 7 kWh must come now
    site = Site(base_kw=[10, 10], cars=[Car(0, 21, 4)])
    _, plan = solve(site)
    assert plan.power_kw[0].sum() >= 7.0 - 1e-6


def test_finer_first_step():
    site = Site(base_kw=[10, 10, 10], cars=[Car(0, 1.0, 2)])
    inp = site.input()
    inp = PlanInput(**{**inp.__dict__, "step_s": np.array([60.0, 3540.0, 3600.0])})
    plan = plan_mpc(inp, 5000.0)
    assert plan.status == "optimal"
    assert float(plan.power_kw[0] @ (inp.step_s / 3600.0)) == pytest.approx(1.0, abs=1e-6)


def test_peak_already_reached_today_is_not_worth_shaving_below():
    # 10 kWh for one car over two steps; the first step is cheap but its household load is higher
    site = Site(base_kw=[60, 50], cars=[Car(0, 10, 2, max_kw=10)], pile_max_kw=10, price=[0.3, 0.6])
    _, plan = solve(site)
    # nothing known of today's peak: shaving wins, the car charges in the lower second step
    assert plan.power_kw[0, 1] > plan.power_kw[0, 0]
    shaved = plan.power_kw[0].copy()
    # the meter already saw 100 kW today: staying below that costs nothing, so the cheap step takes
    # most of it (only the valley-filling spread keeps a little in the second)
    site.extra = {"peak_floor_kw": 100.0}
    _, plan = solve(site)
    assert plan.power_kw[0, 0] > plan.power_kw[0, 1]
    assert plan.power_kw[0, 0] > shaved[0] + 3.0


def test_a_car_leaving_inside_a_step_is_planned_at_the_power_it_draws_while_there():
    # 10 kW of room above the household load; the car leaves 2 minutes into the cheap second step.
    # Averaged over that step a 30 kW burst would look like 4 kW: the plan must see the 30 kW.
    site = Site(base_kw=[100, 100], step_h=0.25, import_limit_kw=110.0, pile_max_kw=30.0, price=[1.0, 0.5],
                cars=[Car(0, 2.7, 0.25 + 2 / 60, max_kw=30.0)])
    _, plan = solve(site)
    assert plan.power_kw[0, 1] <= 10.0 + 1e-6
    # and its last minutes are kept as a margin before the price: the room of the first step is used first
    assert plan.power_kw[0] == pytest.approx([10.0, (2.7 - 2.5) / (2 / 60)], abs=1e-6)
    assert plan.info["unmet_kwh"] == pytest.approx(0.0, abs=1e-6)


def test_energy_comes_sooner_unless_later_is_really_cheaper():
    # price and energy only (no peak or valley terms): the hedge for cars still to come decides
    flat = replace(MPC_WEIGHTS, peak_per_kw=0.0, valley_per_kwh=0.0)
    near = Site(base_kw=[10, 10, 10, 10], step_h=0.5, cars=[Car(0, 3.5, 2.0)], price=[0.50, 0.50, 0.49, 0.49])
    plan = plan_mpc(near.input(), 5000.0, weights=flat)
    assert plan.power_kw[0] == pytest.approx([7.0, 0.0, 0.0, 0.0], abs=1e-6)  # 0.01 yuan/kWh is not worth waiting
    step = Site(base_kw=[10, 10, 10, 10], step_h=0.5, cars=[Car(0, 3.5, 2.0)], price=[0.80, 0.80, 0.50, 0.50])
    plan = plan_mpc(step.input(), 5000.0, weights=flat)
    assert plan.power_kw[0, :2] == pytest.approx([0.0, 0.0], abs=1e-6)  # a tariff step is
    assert plan.power_kw[0, 2:].sum() * 0.5 == pytest.approx(3.5, abs=1e-6)


def test_the_plan_keeps_clear_of_what_a_forecast_error_may_take_unless_energy_needs_it():
    # 10 kW of room in both hours, the top 5 kW of the second one within the forecast's spread:
    # the cheap second hour is used only up to the spread, the first hour takes the rest
    site = Site(base_kw=[100, 100], import_limit_kw=110.0, price=[1.0, 0.3], cars=[Car(0, 12.0, 2.0)],
                extra={"base_spread_kw": np.array([0.0, 5.0])})
    _, plan = solve(site)
    assert plan.power_kw[0] == pytest.approx([7.0, 5.0], abs=1e-6)
    # delivering the energy comes first: 13 kWh need 1 kW of the spread
    site.cars = [Car(0, 13.0, 2.0)]
    _, plan = solve(site)
    assert plan.power_kw[0] == pytest.approx([7.0, 6.0], abs=1e-6)
    assert plan.info["unmet_kwh"] == pytest.approx(0.0, abs=1e-6)


def test_step_grid_aligns_to_the_clock_and_breaks_at_dispatch_changes_without_slivers():
    t0 = T0 + 300.0  # five minutes past a quarter hour
    steps = step_grid(t0, 3600.0, 900.0)
    assert steps[0] == 600.0 and np.all(steps[1:] == 900.0) and steps.sum() >= 3600.0
    # a command starting at 20 past, and one whose start is a rounding error after the half hour
    edges = t0 + np.cumsum(step_grid(t0, 3600.0, 900.0, np.array([T0 + 1200.0, T0 + 1800.0 + 1e-9])))
    assert T0 + 1200.0 in edges and T0 + 1800.0 in edges
    assert np.diff(np.concatenate([[t0], edges])).min() >= 1.0


def test_step_grid_has_a_step_whenever_the_horizon_is_at_least_one_step():
    # the bound check-config holds (control.step_s <= horizon_s); below it, a 60 s horizon in 900 s
    # steps has no step at all once 675 s into a quarter hour are past, and the decision fails on the empty plan
    for offset_s in np.arange(0.0, 900.0, 7.5):
        for horizon_s in (900.0, 1000.0, 3600.0):
            steps = step_grid(T0 + offset_s, horizon_s, 900.0)
            assert steps.size >= 1 and steps.sum() >= horizon_s, (offset_s, horizon_s, steps)


def test_no_rounding_dust_reaches_the_solver():
    # a V2G car whose request is met but for 1e-15 kWh stays in the plan (it may still discharge)
    site = Site(base_kw=[50, 50], cars=[Car(0, 1e-15, 2.0, v2g=True)], v2g_piles=True, export_limit_kw=20)
    prob = mpc_problem(site.input())
    lp = build_lp(prob.grid, prob.sessions)
    assert np.abs(lp.a_data[lp.a_data != 0]).min() > 1e-9


def test_a_household_load_over_a_phase_limit_leaves_the_plan_whole():
    # 110 kW on each phase in the first hour against a 100 kW phase limit: nothing to charge then,
    # and the plan for the hour after is still an optimal plan, not a fallback
    site = Site(base_kw=[330, 200], phase_limit_kw=[100, 100, 100], cars=[Car(i, 5.0, 2.0) for i in range(3)])
    inp = site.input()
    plan = plan_mpc(inp, 5000.0)
    assert plan.status == "optimal" and not plan.fallback
    assert plan.power_kw == pytest.approx(np.array([[0.0, 5.0]] * 3), abs=1e-6)


def test_a_phase_keeps_clear_of_what_a_forecast_error_may_take_unless_energy_needs_it():
    # the car's phase has 10 kW of room in both hours; the top 5 kW of the cheap second hour is spread
    site = Site(base_kw=[270, 270], phase_limit_kw=[100, 100, 100], price=[1.0, 0.3], cars=[Car(0, 12.0, 2.0)],
                extra={"base_phase_spread_kw": np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])})
    _, plan = solve(site)
    assert plan.power_kw[0] == pytest.approx([7.0, 5.0], abs=1e-6)
    site.cars = [Car(0, 13.0, 2.0)]
    _, plan = solve(site)
    assert plan.power_kw[0] == pytest.approx([7.0, 6.0], abs=1e-6)
