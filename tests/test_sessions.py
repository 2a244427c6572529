"""Sessions from pile status, bookings from the residents' app, and the car's own power limit."""

from __future__ import annotations

import json

import numpy as np

from youxu.controller.grid.bookings import PileInfo, parse_booking
from youxu.controller.gridlink import Booking
from youxu.controller.loop.sessions import PileObservation, SessionTracker

T0 = 1_782_900_000.0
PILES = ("P1", "P2")
MIN = {"P1": 1.4, "P2": 1.4}


def tick(tr: SessionTracker, t: float, obs: dict, offered: dict | None = None) -> list:
    return tr.update(t, obs, offered or {}, MIN)


def test_plug_in_starts_a_session_and_unplug_ends_it():
    tr = SessionTracker(PILES, default_dwell_s=3600, default_energy_kwh=10)
    changes = tick(tr, T0, {"P1": PileObservation("connected", 0.0, 0.0), "P2": PileObservation("available", 0, 0)})
    assert changes == [("P1", "session_started")]
    s = tr.arrays()
    assert s.active.tolist() == [True, False]
    assert s.departure_s[0] == T0 + 3600 and s.energy_requested_kwh[0] == 10
    tick(tr, T0 + 60, {"P1": PileObservation("charging", 7.0, 0.5)})
    assert tr.arrays().energy_delivered_kwh[0] == 0.5
    assert tick(tr, T0 + 120, {"P1": PileObservation("available", 0.0, 0.0)}) == [("P1", "session_ended")]
    assert not tr.arrays().active.any()
    assert [s.pile_id for s in tr.drain_finished()] == ["P1"]


def test_booking_waits_for_its_car_and_sets_the_session():
    tr = SessionTracker(PILES, booking_window_s=1800)
    b = Booking("P2", departure_s=T0 + 7200, energy_kwh=18.0, v2g=True, min_soc=0.4, priority="urgent",
                received_s=T0, car_max_kw=3.3)
    assert tr.apply_booking(b) == "pending"
    tick(tr, T0 + 600, {"P2": PileObservation("connected", 0.0, 0.0)})
    s = tr.arrays()
    assert s.active[1] and s.departure_s[1] == T0 + 7200 and s.energy_requested_kwh[1] == 18.0
    assert s.v2g[1] and s.urgent[1] and s.min_soc[1] == 0.4 and s.car_max_kw[1] == 3.3


def test_a_stale_booking_is_forgotten():
    tr = SessionTracker(PILES, booking_window_s=600)
    tr.apply_booking(Booking("P1", departure_s=T0 + 7200, energy_kwh=5.0, received_s=T0))
    tick(tr, T0 + 900, {"P1": PileObservation("available", 0.0, 0.0)})
    tick(tr, T0 + 960, {"P1": PileObservation("connected", 0.0, 0.0)})
    assert tr.arrays().energy_requested_kwh[0] == tr.default_energy_kwh


def test_the_car_limit_is_learnt_when_it_takes_less_than_offered():
    tr = SessionTracker(PILES)
    tick(tr, T0, {"P1": PileObservation("connected", 0.0, 0.0)})
    assert not np.isfinite(tr.arrays().car_max_kw[0])
    tick(tr, T0 + 1, {"P1": PileObservation("charging", 3.3, 0.0)}, offered={"P1": 7.0})
    assert 3.3 < tr.arrays().car_max_kw[0] < 3.8
    # offered no more than it takes: nothing new is learnt
    tick(tr, T0 + 2, {"P1": PileObservation("charging", 2.0, 0.0)}, offered={"P1": 2.0})
    assert 3.3 < tr.arrays().car_max_kw[0] < 3.8


def test_a_car_that_stops_drawing_is_full():
    tr = SessionTracker(PILES, default_energy_kwh=30)
    tick(tr, T0, {"P1": PileObservation("charging", 7.0, 0.0)})
    for k in range(1, 4):
        tick(tr, T0 + k, {"P1": PileObservation("connected", 0.0, 12.0)}, offered={"P1": 7.0})
    s = tr.arrays()
    assert s.remaining_kwh[0] == 0.0  # full: no more energy planned for it


def test_booking_carries_the_cars_own_limit_from_the_app():
    piles = {"P1": PileInfo("P1", v2g=False)}
    payload = json.dumps({"schema": "youxu.session/1", "departure": "2026-07-01T23:00:00+08:00",
                          "energy_kwh": 12.0, "max_kw": 3.3})
    b = parse_booking(payload, "P1", piles, now_s=1_782_900_000.0 - 86400 * 2)
    assert isinstance(b, Booking) and b.car_max_kw == 3.3
