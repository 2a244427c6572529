"""Alarms from tick reports: reported once when they start and once when they clear."""

from __future__ import annotations

import numpy as np

from tests.dispatch_builders import report
from youxu.controller.grid.site_alarms import AlarmWatch


def kinds(alarms: list) -> list[str]:
    return [a.kind for a in alarms]


def test_overload_on_total_or_phase_once_each_way() -> None:
    w = AlarmWatch(np.array([150.0, 150.0, 150.0]))
    assert kinds(w.observe(report(0, 400.0, 0.0, limit_kw=550.0))) == []
    r = report(1, 480.0, 0.0, limit_kw=550.0)
    r.phase_kw = (200.0, 140.0, 140.0)  # total fine, L1 over
    got = w.observe(r)
    assert kinds(got) == ["overload"] and got[0].fields["phases"] == ["L1"]
    assert kinds(w.observe(report(2, 560.0, 0.0, limit_kw=550.0))) == []  # still over: no repeat
    r = report(3, 550.05, 0.0, limit_kw=550.0)  # within 0.1 kW of the limit
    r.phase_kw = (150.05, 150.0, 150.0)  # and of the phase limits
    assert kinds(w.observe(r)) == ["overload_cleared"]


def test_pile_faults_and_safe_mode() -> None:
    w = AlarmWatch()
    assert kinds(w.observe(report(0, 100.0, 0.0, pile_status={"P1": "fault", "P2": "charging"}))) == ["pile_fault"]
    assert kinds(w.observe(report(1, 100.0, 0.0, pile_status={"P1": "fault", "P2": "fault"}))) == ["pile_fault"]
    got = w.observe(report(2, 100.0, 0.0, safe_mode=True, pile_status={"P1": "available", "P2": "fault"}))
    assert kinds(got) == ["safe_mode", "pile_fault_cleared"] and got[1].fields == {"pile": "P1"}
    assert kinds(w.observe(report(3, 100.0, 0.0, pile_status={"P1": "available", "P2": "fault"}))) == [
        "safe_mode_cleared"]


def test_export_beyond_the_export_limit_once_each_way() -> None:
    w = AlarmWatch()
    r = report(0, -50.0, 0.0)
    r.export_limit_kw = 60.0
    assert kinds(w.observe(r)) == []  # exporting within the limit
    r = report(1, -1000.0, 0.0)
    r.export_limit_kw = 60.0
    got = w.observe(r)
    assert kinds(got) == ["export_overload"] and got[0].fields == {"total_kw": -1000.0, "export_limit_kw": 60.0}
    assert kinds(w.observe(r)) == []  # still over: no repeat
    r = report(2, -60.05, 0.0)  # within 0.1 kW of the limit
    r.export_limit_kw = 60.0
    assert kinds(w.observe(r)) == ["export_overload_cleared"]
