"""The run-at-a-time greedy allocation gives what serving the piles one by one gives."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from youxu.scheduler.heuristics import EPS, greedy_allocate
from youxu.scheduler.model import phase_matrix


def pile_by_pile(order, demand, min_kw, share, total_kw, phase_kw):
    """The definition: each pile in order takes what it wants while the total and its phases have room."""
    alloc = np.zeros(demand.size)
    room_phase = phase_kw.astype(float).copy()
    room_total = float(total_kw)
    for i in order:
        if demand[i] <= EPS:
            continue
        on = share[i] > 0
        cap = min(demand[i], room_total, float(np.min(room_phase[on] / share[i][on])))
        if cap + EPS >= min_kw[i] and cap > EPS:
            alloc[i] = cap
            room_total -= cap
            room_phase -= cap * share[i]
    return alloc


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 80), seed=st.integers(0, 2**31), total_share=st.floats(-0.2, 1.2),
       phase_share=st.floats(-0.1, 1.2), unlimited=st.sampled_from(["none", "total", "phase"]))
def test_same_allocation_as_pile_by_pile(n, seed, total_share, phase_share, unlimited):
    rng = np.random.default_rng(seed)
    phases = [("L1", "L2", "L3", "3P")[i] for i in rng.integers(0, 4, n)]
    share = phase_matrix(phases, [3 if p == "3P" else 1 for p in phases])
    demand = np.where(rng.random(n) < 0.7, rng.choice([7.0, 3.5, 11.0, 1.0, 0.5], n) * rng.uniform(0.1, 1.0, n)
                      ** rng.integers(0, 2, n), 0.0)
    min_kw = rng.choice([1.38, 1.4, 4.1], n)
    total = float(demand.sum() * total_share) if unlimited != "total" else float("inf")
    phase = demand @ share * phase_share + rng.uniform(-3, 3, 3)
    if unlimited == "phase":
        phase = np.full(3, np.inf)
    order = rng.permutation(n)
    got = greedy_allocate(order, demand, min_kw, share, total, phase)
    want = pile_by_pile(order, demand, min_kw, share, total, phase)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_a_full_phase_leaves_room_for_the_others():
    share = phase_matrix(["L1", "L1", "L2", "3P"], [1, 1, 1, 3])
    demand = np.full(4, 7.0)
    got = greedy_allocate(np.arange(4), demand, np.full(4, 1.4), share, 100.0, np.array([10.0, 50.0, 50.0]))
    # L1 has 10 kW: the first pile takes 7, the second only 3, the 3-phase pile finds L1 full
    np.testing.assert_allclose(got, [7.0, 3.0, 7.0, 0.0])
