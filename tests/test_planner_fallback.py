"""When the LP cannot plan (infeasible, out of time, bad input), least-laxity-first plans the tick;
the warm start gives the same optimum as a cold solve; the bench speaks the contract."""

from __future__ import annotations

import numpy as np
import pytest

from tests import contract
from tests.planner_fixtures import Car, Site
from youxu.scheduler import lp_solve
from youxu.scheduler.bench import T0_S, SyntheticSite, bench_solve
from youxu.scheduler.lp_build import build_lp
from youxu.scheduler.lp_solve import solve_lp
from youxu.scheduler.lp_warm import WarmStart
from youxu.scheduler.model import Plan, PlanInput
from youxu.scheduler.planner import mpc_problem, plan_mpc

BENCH_KEYS = contract.BENCH_SOLVE_KEYS


def check_first_step(inp: PlanInput, plan: Plan) -> None:
    """The step that is applied: within every limit of step 0, pile ratings and the dead band."""
    p = plan.first_kw
    p_ = inp.piles
    assert np.all((p == 0) | (np.abs(p) >= p_.min_kw - 1e-9))
    assert np.all(p <= p_.max_kw + 1e-9)
    assert inp.base_kw[0] + p.sum() <= inp.import_limit_kw[0] + 1e-6
    assert p.sum() <= inp.ev_import_limit_kw[0] + 1e-6
    if inp.phase_limit_kw is not None:
        assert np.all(inp.base_phase_kw[0] + p @ p_.phase_share <= inp.phase_limit_kw + 1e-6)


def test_infeasible_site_falls_back_to_least_laxity_first():
    # the homes export 50 kW (PV) where the grid takes none and no car can soak it up
    site = Site(base_kw=[-50.0, 10.0], cars=[Car(0, 7, 2)], export_limit_kw=0.0, ev_import_limit_kw=[0.0, 20.0])
    inp = site.input()
    plan = plan_mpc(inp, 5000.0)
    assert plan.fallback
    assert plan.status == "fallback:infeasible"
    check_first_step(inp, plan)


def test_bad_input_falls_back_instead_of_raising():
    site = Site(base_kw=[np.nan, 10.0], cars=[Car(0, 7, 2)])
    plan = plan_mpc(site.input(), 5000.0)
    assert plan.fallback
    assert plan.power_kw.shape == (1, 2)


def test_forced_timeout_gives_a_valid_fallback_plan():
    site = SyntheticSite.make(60, 96)
    inp = site.input_at(T0_S)
    plan = plan_mpc(inp, time_limit_ms=0.01)  # no LP fits in 10 microseconds
    assert plan.fallback
    assert plan.status.startswith("fallback:")
    assert plan.power_kw.shape == (60, 96)
    assert plan.first_kw.sum() > 0  # cars are charged
    check_first_step(inp, plan)


def test_llf_fallback_serves_the_least_laxity_first():
    # room for one car only; car 1 leaves sooner with as much to do, so it has less laxity
    site = Site(base_kw=[93, 93], cars=[Car(0, 7, 2), Car(1, 7, 1)], import_limit_kw=[100, 100])
    inp = site.input()
    plan = plan_mpc(inp, 0.001)
    assert plan.fallback
    assert plan.first_kw == pytest.approx([0.0, 7.0])


def test_budget_spent_on_building_falls_back_without_solving():
    inp = SyntheticSite.make(200, 96).input_at(T0_S)
    plan = plan_mpc(inp, time_limit_ms=1.0)
    assert plan.fallback
    assert plan.solve_ms < 50.0


def test_warm_start_reaches_the_cold_optimum_as_the_site_moves_on():
    """Rolling ticks with arrivals, departures and a step boundary: warm and cold agree."""
    site = SyntheticSite.make(40, 32, seed=3)
    warm = WarmStart()
    t = T0_S + 600.0  # the first step is 5 min, so the grid moves on during the run
    warm_iters, cold_iters = [], []
    for i in range(12):
        inp = site.input_at(t)
        prob = mpc_problem(inp, warm)
        lp = build_lp(prob.grid, prob.sessions)
        res_w = solve_lp(lp, "GLOP", 30.0, warm)
        res_c = solve_lp(build_lp(*_cold(inp)), "GLOP", 30.0)
        assert res_w.ok and res_c.ok
        assert res_w.objective == pytest.approx(res_c.objective, rel=1e-6, abs=1e-3)
        if i > 0:
            warm_iters.append(res_w.iterations)
            cold_iters.append(res_c.iterations)
        plan = plan_mpc(inp, 30_000.0)
        site.advance(plan, t, 60.0, i)
        t += 60.0
    assert warm.warm_solves == 11
    assert sum(warm_iters) < 0.2 * sum(cold_iters)


def test_a_cold_start_gets_its_own_longer_budget_then_plans_stay_within_the_short_one():
    site = SyntheticSite.make(120, 64, seed=7)
    warm = WarmStart()
    t = T0_S
    first = plan_mpc(site.input_at(t), 1.0, warm, cold_time_limit_ms=60_000.0)
    assert first.status == "optimal"  # 1 ms would never do from scratch
    site.advance(first, t, 60.0, 0)
    nxt = plan_mpc(site.input_at(t + 60.0), 0.001, warm, cold_time_limit_ms=60_000.0)
    assert nxt.fallback  # warm now: the short budget applies again


def _cold(inp: PlanInput):
    prob = mpc_problem(inp)
    return prob.grid, prob.sessions


def test_bench_reports_exactly_the_contract_keys():
    out = bench_solve(piles=20, horizon=16, repeat=3)
    assert set(out) == BENCH_KEYS
    assert out["piles"] == 20 and out["horizon"] == 16
    assert out["status"] == "optimal"
    assert 0 < out["total_ms_p50"] <= out["total_ms_p99"]
    assert out["build_ms_p50"] > 0 and out["solve_ms_p50"] > 0


def _cut_short(monkeypatch: pytest.MonkeyPatch, iterations: int) -> None:
    """Stop the cold-start solver (HiGHS) after `iterations` simplex iterations: the same early stop as its
    time limit, but at the same point on any machine."""
    params = lp_solve._params

    def cut(solver: str, time_limit_s: float, near_optimal: bool):
        p = params(solver, time_limit_s, near_optimal)
        if solver == lp_solve.COLD_START_SOLVER:
            p.iteration_limit = iterations
        return p

    monkeypatch.setattr(lp_solve, "_params", cut)


def test_a_cold_start_cut_short_leaves_its_basis_and_the_next_plan_carries_on_from_it(monkeypatch):
    """A solve stopped early keeps where it got to; the next plan starts from there, and needs the fewer
    iterations the further the cut-short solve got."""
    inp = SyntheticSite.make(100, 64, seed=5).input_at(T0_S)
    iterations = {}
    for cut_at in (10, 1000):
        warm = WarmStart()
        with monkeypatch.context() as m:
            _cut_short(m, cut_at)
            first = plan_mpc(inp, 60_000.0, warm)
        assert first.status == "fallback:timeout" and warm.last_iterations == cut_at
        assert first.fallback and warm.saved is not None and not warm.saved_optimal
        nxt = plan_mpc(inp, 60_000.0, warm)
        assert nxt.status == "optimal" and not nxt.fallback
        assert warm.warm_solves == 1  # it started from the cut-short basis, not from scratch
        iterations[cut_at] = warm.last_iterations
    assert iterations[1000] < iterations[10]
