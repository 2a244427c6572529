"""Disaggregation: the plan's first step into setpoints that keep the dead band and the headroom."""

from __future__ import annotations

import numpy as np
import pytest

from youxu.scheduler.deadband import DeadbandState, Headroom, to_setpoints
from youxu.scheduler.model import Piles, phase_matrix

INF = np.inf


def piles(n: int, phases: list[str] | None = None, v2g: bool = False, min_kw: float = 1.4) -> Piles:
    ph = phases or [("L1", "L2", "L3")[i % 3] for i in range(n)]
    return Piles(ids=tuple(f"P{i}" for i in range(n)), max_kw=np.full(n, 7.0), min_kw=np.full(n, min_kw),
                 phase_share=phase_matrix(ph, [1] * n), v2g=np.full(n, v2g), max_discharge_kw=np.full(n, 7.0 * v2g))


def room(total: float = INF, phase: tuple[float, float, float] = (INF, INF, INF), export: float = INF) -> Headroom:
    return Headroom(total, np.array(phase, dtype=float), export)


def in_deadband(sp: np.ndarray, p: Piles) -> bool:
    return bool(np.all((np.abs(sp) < 1e-9) | (np.abs(sp) >= p.min_kw - 1e-9)))


def test_plan_above_the_minimum_passes_through_unchanged():
    p = piles(3)
    st = DeadbandState(3)
    sp = to_setpoints(np.array([7.0, 3.0, 0.0]), p, ["a", "b", "c"], room(), 60.0, st)
    assert sp == pytest.approx([7.0, 3.0, 0.0])
    assert st.debt_kwh == pytest.approx([0.0, 0.0, 0.0])


def test_small_shares_rotate_so_every_session_gets_its_energy():
    n, ticks, dt = 10, 40, 60.0
    p = piles(n)
    st = DeadbandState(n)
    plan = np.full(n, 0.7)  # half the minimum each: half of them run at a time
    got = np.zeros(n)
    ran = np.zeros(n, dtype=int)
    for _ in range(ticks):
        sp = to_setpoints(plan, p, [f"s{i}" for i in range(n)], room(), dt, st)
        assert in_deadband(sp, p)
        assert sp.sum() == pytest.approx(7.0, abs=1.4 + 1e-9)  # the aggregate follows the plan
        got += sp * dt / 3600.0
        ran += sp > 0
    want = 0.7 * ticks * dt / 3600.0
    assert np.all(ran > 0)  # everyone took turns
    assert got == pytest.approx(np.full(n, want), abs=1.4 * dt / 3600.0 + 1e-9)  # within one tick at minimum


def test_rounding_never_passes_the_total_headroom():
    n = 10
    p = piles(n)
    st = DeadbandState(n)
    for _ in range(20):
        sp = to_setpoints(np.full(n, 0.7), p, [f"s{i}" for i in range(n)], room(total=5.0), 60.0, st)
        assert sp.sum() <= 5.0 + 1e-9
        assert in_deadband(sp, p)


def test_rounding_never_passes_a_phase_headroom():
    n = 6
    p = piles(n, phases=["L1"] * 6)
    st = DeadbandState(n)
    for _ in range(20):
        sp = to_setpoints(np.full(n, 1.0), p, [f"s{i}" for i in range(n)], room(phase=(3.0, INF, INF)), 60.0, st)
        assert (sp @ p.phase_share)[0] <= 3.0 + 1e-9
        assert in_deadband(sp, p)
        assert sp.sum() > 0  # but the room there is used


def test_plan_over_the_room_is_cut_keeping_the_dead_band():
    p = piles(3)
    st = DeadbandState(3)
    sp = to_setpoints(np.array([7.0, 7.0, 1.5]), p, ["a", "b", "c"], room(total=10.0), 60.0, st)
    assert sp.sum() <= 10.0 + 1e-9
    assert in_deadband(sp, p)


def test_a_new_car_starts_without_the_old_cars_debt():
    p = piles(1)
    st = DeadbandState(1)
    to_setpoints(np.array([1.0]), p, ["old"], room(total=0.0), 60.0, st)  # no room: debt builds up
    assert st.debt_kwh[0] > 0
    sp = to_setpoints(np.array([0.0]), p, ["new"], room(), 60.0, st)
    assert sp[0] == 0.0
    assert st.debt_kwh[0] == 0.0


def test_debt_is_repaid_when_room_comes_back():
    p = piles(1)
    st = DeadbandState(1)
    for _ in range(5):
        to_setpoints(np.array([3.0]), p, ["a"], room(total=0.0), 60.0, st)
    assert st.debt_kwh[0] == pytest.approx(0.25)  # 5 minutes at 3 kW
    sp = to_setpoints(np.array([3.0]), p, ["a"], room(), 60.0, st)
    assert sp[0] == pytest.approx(7.0)  # catches up at full power
    assert st.debt_kwh[0] == pytest.approx(0.25 - 4.0 / 60.0)


def test_debt_is_capped():
    p = piles(1)
    st = DeadbandState(1, max_debt_s=600.0)
    for _ in range(100):
        to_setpoints(np.array([7.0]), p, ["a"], room(total=0.0), 60.0, st)
    assert st.debt_kwh[0] == pytest.approx(7.0 * 600.0 / 3600.0)


def test_offline_pile_or_no_session_gets_zero():
    p = piles(2)
    st = DeadbandState(2)
    sp = to_setpoints(np.array([5.0, 5.0]), p, ["a", None], room(), 60.0, st, online=np.array([False, True]))
    assert sp == pytest.approx([0.0, 0.0])


def test_small_discharge_rounds_to_the_minimum_within_the_export_room():
    p = piles(4, v2g=True)
    st = DeadbandState(4)
    sp = to_setpoints(np.full(4, -0.7), p, ["a", "b", "c", "d"], room(export=2.0), 60.0, st)
    assert in_deadband(sp, p)
    assert -sp.sum() <= 2.0 + 1e-9
    assert (sp < 0).sum() == 1  # 2.8 kW asked, room for one pile at its 1.4 kW minimum


def test_with_slack_the_car_with_least_laxity_keeps_its_power_when_room_is_short():
    p = piles(2)
    ids = ["S0", "S1"]
    # S0 leaves in 10 h but needs 9.9 of them at full power; S1 leaves in 2 h and needs 1: room for one car
    leave = np.array([36000.0, 7200.0])
    slack = np.array([360.0, 3600.0])
    by_leave = to_setpoints(np.array([7.0, 7.0]), p, ids, room(7.0), 60.0, DeadbandState(2), leave_s=leave)
    assert by_leave.tolist() == [0.0, 7.0]  # by departure alone the long stay is cut
    by_slack = to_setpoints(np.array([7.0, 7.0]), p, ids, room(7.0), 60.0, DeadbandState(2), leave_s=leave,
                            slack_s=slack)
    assert by_slack.tolist() == [7.0, 0.0]  # least-laxity-first: the car that cannot wait keeps its power
