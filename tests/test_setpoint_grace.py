"""A setpoint is not called INFEASIBLE before the controller has had time to plan with it."""

from __future__ import annotations

from tests.dispatch_builders import report, site_config
from tests.test_commands import T0, record
from youxu.controller.grid.commands import INFEASIBLE, CommandBook
from youxu.controller.grid.mqtt_link import setpoint_grace_s
from youxu.controller.siteconfig import parse_site_config


def test_setpoint_waits_for_the_planning_period_a_limit_does_not() -> None:
    book = CommandBook(apply_grace_s=30, setpoint_grace_s=62)
    sp = record(kind="setpoint", setpoint_kw=-50.0, scope="ev", import_max_kw=None)
    lim = record(import_max_kw=300.0, issuer="other")
    book.admit(sp, T0)
    book.admit(lim, T0)
    out = book.check_applied(report(T0 + 31, 345.0, 0.0))
    assert [(r.command_id, a.reason) for r, a in out if a] == [(lim.command_id, INFEASIBLE)]
    assert book.check_applied(report(T0 + 61, 345.0, 0.0)) == []
    out = book.check_applied(report(T0 + 62, 345.0, 0.0))
    assert [(r.command_id, a.reason, a.achieved_kw) for r, a in out if a] == [(sp.command_id, INFEASIBLE, 0.0)]


def test_setpoint_met_before_the_grace_is_applied_at_once() -> None:
    book = CommandBook(apply_grace_s=30, setpoint_grace_s=62)
    sp = record(kind="setpoint", setpoint_kw=-50.0, scope="ev", import_max_kw=None)
    book.admit(sp, T0)
    out = book.check_applied(report(T0 + 2, 51.0, -49.2))
    assert [(a.status, a.reason, a.achieved_kw) for _r, a in out if a] == [("applied", None, -49.2)]


def test_grace_follows_the_planning_period_of_the_strategy() -> None:
    cfg = site_config("s1", "mqtt://127.0.0.1:1883")
    assert setpoint_grace_s(cfg) == cfg.control.planning_period_s + 2 * cfg.control.period_s  # mpc
    raw = cfg.model_dump(mode="json", exclude_none=True)
    raw["control"] = {**raw["control"], "strategy": "llf", "period_s": 0.5}
    assert setpoint_grace_s(parse_site_config(raw)) == 1.0
    assert CommandBook(apply_grace_s=30, setpoint_grace_s=1.0).setpoint_grace_s == 30  # the longer one
