"""Arbitration: tightest limit wins, setpoints by priority then seq, default and fallback."""

from __future__ import annotations

import json

import numpy as np

from tests.dispatch_builders import command
from youxu.controller.grid.arbitration import InForce, dispatch_limits
from youxu.controller.grid.dispatch_schema import DispatchCommand, validate_command

T0 = 1_782_900_000.0


def cmd(**kw: object) -> DispatchCommand:
    raw = command(T0, **kw)  # type: ignore[arg-type]
    c = validate_command(json.dumps(raw), site_id="s")
    assert isinstance(c, DispatchCommand), c
    return c


def multi_period() -> DispatchCommand:
    raw = command(T0, minutes=120)
    raw["periods"] = [{"offset_s": 600, "import_max_kw": 420.0, "export_max_kw": 0.0},
                      {"offset_s": 3600, "import_max_kw": 450.0}]
    c = validate_command(json.dumps(raw), site_id="s")
    assert isinstance(c, DispatchCommand)
    return c


def test_periods_apply_from_their_offset_until_the_next_or_valid_until() -> None:
    c = multi_period()
    t = T0 + np.array([0, 599, 600, 3599, 3600, 7199, 7200, 9000])
    d = dispatch_limits([InForce.of(c)], t)
    assert d.site_import_max_kw.tolist() == [np.inf, np.inf, 420, 420, 450, 450, np.inf, np.inf]
    assert d.site_export_max_kw.tolist() == [np.inf, np.inf, 0, 0, np.inf, np.inf, np.inf, np.inf]
    assert np.isinf(d.ev_import_max_kw).all() and np.isnan(d.setpoint_kw).all()


def test_any_order_of_times_and_scalar_times() -> None:
    c = multi_period()
    t = T0 + np.array([7000.0, 0.0, 700.0])
    assert dispatch_limits([InForce.of(c)], t).site_import_max_kw.tolist() == [450, np.inf, 420]
    assert dispatch_limits([InForce.of(c)], T0 + 700).site_import_max_kw.tolist() == [420]


def test_every_limit_applies_and_the_tightest_wins_per_scope() -> None:
    a = cmd(import_max_kw=420.0, minutes=60)
    b = cmd(import_max_kw=380.0, minutes=30, issuer="other")
    e = cmd(import_max_kw=100.0, scope="ev", minutes=60)
    t = T0 + np.array([60.0, 2000.0, 4000.0])
    d = dispatch_limits([InForce.of(a), InForce.of(b), InForce.of(e)], t)
    assert d.site_import_max_kw.tolist() == [380, 420, np.inf]
    assert d.ev_import_max_kw.tolist() == [100, 100, np.inf]
    assert set(d.active_command_ids) == {a.command_id, b.command_id, e.command_id}


def test_effective_end_shortens_a_command() -> None:
    a = cmd(import_max_kw=420.0, minutes=60)
    d = dispatch_limits([InForce(a, T0 + 600)], T0 + np.array([0.0, 599.0, 600.0]))
    assert d.site_import_max_kw.tolist() == [420, 420, np.inf]


def test_setpoints_lowest_priority_number_then_highest_seq() -> None:
    low = cmd(kind="setpoint", setpoint_kw=80.0, priority=5, seq=10, minutes=60)
    high = cmd(kind="setpoint", setpoint_kw=40.0, priority=1, seq=5, minutes=30, issuer="x")
    newer = cmd(kind="setpoint", setpoint_kw=60.0, priority=5, seq=11, minutes=45, issuer="y")
    t = T0 + np.array([60.0, 2000.0, 3000.0, 4000.0])
    d = dispatch_limits([InForce.of(low), InForce.of(high), InForce.of(newer)], t)
    assert d.setpoint_kw[:3].tolist() == [40, 60, 80]
    assert np.isnan(d.setpoint_kw[3])
    assert d.setpoint_scope == "site"


def test_setpoint_scope_follows_the_first_winner() -> None:
    ev = cmd(kind="setpoint", setpoint_kw=-20.0, scope="ev", minutes=60)
    d = dispatch_limits([InForce.of(ev)], T0 + np.array([0.0, 5000.0]))
    assert d.setpoint_scope == "ev" and d.setpoint_kw[0] == -20 and np.isnan(d.setpoint_kw[1])


def test_default_fills_uncovered_times_and_everything_on_link_loss() -> None:
    a = cmd(import_max_kw=420.0, minutes=60)
    raw = command(T0 - 86400, import_max_kw=300.0, valid_until=None, valid_from=None)
    default = validate_command(json.dumps(raw), site_id="s")
    assert isinstance(default, DispatchCommand)
    t = T0 + np.array([60.0, 4000.0])
    up = dispatch_limits([InForce.of(a)], t, default=default)
    assert up.site_import_max_kw.tolist() == [420, 300]  # default only where no command is in force
    lost = dispatch_limits([InForce.of(a)], t, default=default, link_lost=True)
    assert lost.site_import_max_kw.tolist() == [300, 300]  # tightest of command and default
    assert default.command_id in lost.active_command_ids and a.command_id in lost.active_command_ids
    loose = validate_command(json.dumps(dict(raw, periods=[{"offset_s": 0, "import_max_kw": 500.0}])), site_id="s")
    assert isinstance(loose, DispatchCommand)
    assert dispatch_limits([InForce.of(a)], t, default=loose, link_lost=True).site_import_max_kw.tolist() == [420, 500]


def test_fallback_limit_only_when_link_lost_without_default() -> None:
    t = T0 + np.array([0.0, 100.0])
    assert np.isinf(dispatch_limits([], t, fallback_limit_kw=250.0).site_import_max_kw).all()
    assert dispatch_limits([], t, link_lost=True, fallback_limit_kw=250.0).site_import_max_kw.tolist() == [250, 250]
    assert np.isinf(dispatch_limits([], t, link_lost=True).site_import_max_kw).all()


def test_cancel_commands_are_not_limits() -> None:
    c = cmd(kind="cancel", cancels="abc")
    d = dispatch_limits([InForce.of(c)], np.array([T0]))
    assert np.isinf(d.site_import_max_kw).all() and d.active_command_ids == ()
