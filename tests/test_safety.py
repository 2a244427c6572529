"""The safety layer holds every hard limit from measured values, whatever it is asked."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import piles, sessions, snapshot
from youxu.scheduler.model import HardLimits
from youxu.scheduler.safety import enforce

INF = float("inf")


def projected(sp, p, snap):
    fixed = np.zeros(p.n) if snap.fixed_kw is None else np.nan_to_num(snap.fixed_kw, nan=0.0)
    total = snap.base_kw + fixed.sum() + sp.sum()
    phase = snap.base_phase_kw(p.phase_share) + (fixed + sp) @ p.phase_share
    return total, phase


def test_allocation_over_limit_is_cut_to_the_limit():
    p = piles(10)
    snap = snapshot(p, base_kw=300.0)
    lim = HardLimits(import_kw=340.0, export_kw=0.0, phase_kw=None)
    sp = enforce(np.full(10, 7.0), p, snap, lim)
    total, _ = projected(sp, p, snap)
    assert total <= 340.0 + 1e-6
    assert total > 340.0 - 7.0  # does not throw away more than one pile's worth


def test_measured_household_jump_reduces_setpoints_already_running():
    p = piles(6)
    # the piles draw 7 kW each; households jumped to 390 kW: meter reads 432
    snap = snapshot(p, base_kw=390.0, pile_kw=np.full(6, 7.0))
    lim = HardLimits(import_kw=400.0, export_kw=0.0, phase_kw=None)
    sp = enforce(np.full(6, 7.0), p, snap, lim)
    total, _ = projected(sp, p, snap)
    assert total <= 400.0 + 1e-6
    assert ((sp == 0) | (sp >= p.min_kw - 1e-9)).all()


def test_phase_limit_only_cuts_piles_on_that_phase():
    p = piles(6, phases=["L1", "L1", "L1", "L2", "L2", "L3"])
    snap = snapshot(p, base_kw=270.0, base_phase=np.array([95.0, 90.0, 85.0]))
    lim = HardLimits(import_kw=1000.0, export_kw=0.0, phase_kw=np.array([100.0, 120.0, 120.0]))
    sp = enforce(np.full(6, 7.0), p, snap, lim)
    _, phase = projected(sp, p, snap)
    assert phase[0] <= 100.0 + 1e-6
    np.testing.assert_allclose(sp[3:], 7.0)  # L2 and L3 piles untouched


def test_urgent_sessions_are_cut_last():
    p = piles(4)
    sess = sessions(4, urgent=[True, False, False, False])
    snap = snapshot(p, base_kw=100.0, sess=sess)
    lim = HardLimits(import_kw=110.0, export_kw=0.0, phase_kw=None)
    sp = enforce(np.full(4, 7.0), p, snap, lim, urgent=sess.urgent)
    assert sp[0] == 7.0
    assert sp.sum() <= 10.0 + 1e-6


def test_dead_band_and_ratings():
    p = piles(4, v2g=[True, False, False, False])
    snap = snapshot(p, base_kw=10.0)
    lim = HardLimits(import_kw=500.0, export_kw=50.0, phase_kw=None)
    sp = enforce(np.array([-5.0, -5.0, 0.8, 12.0]), p, snap, lim)
    assert sp[0] == -5.0  # V2G pile may discharge
    assert sp[1] == 0.0  # no discharge without V2G
    assert sp[2] == 0.0  # inside the dead band
    assert sp[3] == 7.0  # not above the rating


def test_export_limit_holds_discharge():
    p = piles(4, v2g=[True] * 4)
    snap = snapshot(p, base_kw=5.0)
    lim = HardLimits(import_kw=500.0, export_kw=10.0, phase_kw=None)
    sp = enforce(np.full(4, -7.0), p, snap, lim)
    total, _ = projected(sp, p, snap)
    assert total >= -10.0 - 1e-6


def test_unreachable_pile_counts_at_its_maximum():
    p = piles(3)
    fixed = np.array([np.nan, np.nan, 7.0])
    snap = snapshot(p, base_kw=100.0, fixed_kw=fixed)
    lim = HardLimits(import_kw=112.0, export_kw=0.0, phase_kw=None)
    sp = enforce(np.full(3, 7.0), p, snap, lim)
    assert sp[2] == 0.0
    assert 100.0 + 7.0 + sp.sum() <= 112.0 + 1e-6


def test_ev_scope_limit():
    p = piles(10)
    snap = snapshot(p, base_kw=100.0)
    lim = HardLimits(import_kw=1000.0, export_kw=0.0, phase_kw=None, ev_import_kw=30.0)
    sp = enforce(np.full(10, 7.0), p, snap, lim)
    assert sp.sum() <= 30.0 + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 40),
    base=st.floats(0, 600),
    limit=st.floats(50, 700),
    phase_lim=st.floats(20, 250),
    seed=st.integers(0, 2**31),
)
def test_any_request_ends_within_limits_or_all_off(n, base, limit, phase_lim, seed):
    rng = np.random.default_rng(seed)
    phases = [("L1", "L2", "L3", "3P")[i] for i in rng.integers(0, 4, n)]
    p = piles(n, phases=phases, v2g=list(rng.random(n) < 0.2))
    bp = rng.dirichlet([5, 5, 5]) * base
    snap = snapshot(p, base_kw=base, base_phase=bp, pile_kw=rng.uniform(0, 7, n) * (rng.random(n) < 0.5))
    lim = HardLimits(import_kw=limit, export_kw=20.0, phase_kw=np.full(3, phase_lim))
    req = rng.uniform(-8, 12, n)
    sp = enforce(req, p, snap, lim, urgent=rng.random(n) < 0.2)
    total, phase = projected(sp, p, snap)
    charging = sp > 0
    # either every limit holds, or nothing is left charging that could be cut
    if charging.any():
        assert total <= limit + 1e-6
        assert (phase <= phase_lim + 1e-6).all()
    assert ((sp == 0) | (np.abs(sp) >= p.min_kw - 1e-9)).all()
    assert (sp <= p.max_kw + 1e-9).all()
    assert (sp >= -p.max_discharge_kw - 1e-9).all()
