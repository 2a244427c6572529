"""The command state machine: received → active → completed/expired/superseded/cancelled."""

from __future__ import annotations

import json

from tests.dispatch_builders import command, report
from youxu.controller.grid.commands import INFEASIBLE, NOT_IN_FORCE, CommandBook, CommandRecord, replay
from youxu.controller.grid.dispatch_schema import DispatchCommand, validate_command
from youxu.controller.store.dispatch_store import MemoryDispatchStore

T0 = 1_782_900_000.0


def record(now_s: float = T0, role: str = "dispatch", **kw: object) -> CommandRecord:
    raw = command(now_s, **kw)  # type: ignore[arg-type]
    c = validate_command(json.dumps(raw), site_id="s")
    assert isinstance(c, DispatchCommand), c
    return CommandRecord(cmd=c, role=role, state="received", received_s=now_s, payload=json.dumps(raw), end_s=c.end_s)


def statuses(transitions: list) -> list[tuple[str, str]]:
    return [(a.command_id[:8], a.status) for _r, a in transitions if a is not None]


def test_limit_lifecycle_received_active_applied_completed() -> None:
    book = CommandBook()
    rec = record(start_offset_s=60, minutes=10, import_max_kw=420.0)
    out = book.admit(rec, T0)
    assert [a.status for _r, a in out if a] == ["received"] and rec.state == "received"
    assert book.check_applied(report(T0 + 30, 400, 50)) == []  # not active yet
    book.update(T0 + 60)
    assert rec.state == "active"
    applied = book.check_applied(report(T0 + 61, 410.0, 60.0))
    assert [(a.status, a.reason, a.achieved_kw) for _r, a in applied] == [("applied", None, 410.0)]
    assert book.check_applied(report(T0 + 62, 410.0, 60.0)) == []  # once
    end = book.update(T0 + 660)
    assert [(a.status, r.state) for r, a in end if a] == [("completed", "completed")]
    assert book.in_force() == []


def test_not_within_until_the_grace_then_applied_infeasible() -> None:
    book = CommandBook(apply_grace_s=30)
    rec = record(import_max_kw=300.0)
    book.admit(rec, T0)
    assert book.check_applied(report(T0 + 10, 350.0, 20.0)) == []
    out = book.check_applied(report(T0 + 31, 345.0, 0.0))
    assert [(a.status, a.reason, a.achieved_kw) for _r, a in out] == [("applied", INFEASIBLE, 345.0)]


def test_ev_scope_and_export_limits_use_the_right_measurement() -> None:
    book = CommandBook()
    ev = record(scope="ev", import_max_kw=50.0)
    exp = record(import_max_kw=None, export_max_kw=10.0, issuer="other")
    book.admit(ev, T0)
    book.admit(exp, T0)
    out = {a.command_id: a for _r, a in book.check_applied(report(T0 + 1, -5.0, 45.0)) if a}
    assert out[ev.command_id].achieved_kw == 45.0 and out[exp.command_id].achieved_kw == -5.0


def test_setpoint_applied_only_when_it_wins_and_is_met() -> None:
    book = CommandBook(setpoint_tolerance_kw=2.0)
    win = record(kind="setpoint", setpoint_kw=40.0, scope="ev", priority=1)
    lose = record(kind="setpoint", setpoint_kw=80.0, scope="ev", priority=9, issuer="other")
    book.admit(win, T0)
    book.admit(lose, T0)
    assert book.check_applied(report(T0 + 1, 400.0, 45.0)) == []  # 5 kW off: not yet
    out = book.check_applied(report(T0 + 2, 400.0, 41.0))
    assert [(a.command_id, a.status) for _r, a in out] == [(win.command_id, "applied")]


def test_never_applied_ends_expired() -> None:
    book = CommandBook()
    book.admit(record(minutes=1), T0)
    assert [a.status for _r, a in book.update(T0 + 60) if a] == ["expired"]


def test_same_issuer_scope_and_type_overlapping_is_superseded_at_the_new_start() -> None:
    book = CommandBook()
    old = record(minutes=60, import_max_kw=420.0, seq=1)
    other_issuer = record(minutes=60, import_max_kw=430.0, issuer="aggregator", seq=2)
    new = record(minutes=60, start_offset_s=600, import_max_kw=450.0, seq=3)
    book.admit(old, T0)
    book.admit(other_issuer, T0)
    out = book.admit(new, T0 + 10)
    assert statuses(out) == [(new.command_id[:8], "received")]
    assert old.end_s == T0 + 600 and old.state == "active"
    assert other_issuer.end_s == other_issuer.cmd.end_s  # different issuer: both apply
    later = book.update(T0 + 600)
    assert [(r.command_id, a.status) for r, a in later if a] == [(old.command_id, "superseded")]
    assert new.state == "active"


def test_new_command_starting_now_supersedes_immediately() -> None:
    book = CommandBook()
    old = record(minutes=60, seq=1)
    book.admit(old, T0)
    out = book.admit(record(T0 + 5, minutes=60, seq=2), T0 + 5)
    assert ("superseded" in [a.status for _r, a in out if a]) and old.state == "superseded"


def test_cancel_ends_the_target_and_completes_itself() -> None:
    book = CommandBook()
    target = record(minutes=60)
    book.admit(target, T0)
    cancel = record(T0 + 5, kind="cancel", cancels=target.command_id)
    out = book.admit(cancel, T0 + 5)
    assert [(a.command_id, a.status) for _r, a in out if a] == [
        (cancel.command_id, "received"), (target.command_id, "cancelled"), (cancel.command_id, "completed")]
    assert book.in_force() == [] and target.state == "cancelled"
    out = book.admit(record(T0 + 6, kind="cancel", cancels="nothing"), T0 + 6)
    assert [(a.status, a.reason) for _r, a in out if a][-1] == ("completed", NOT_IN_FORCE)


def test_a_new_default_supersedes_the_old_one() -> None:
    book = CommandBook()
    d1 = record(role="default", valid_until=None)
    d2 = record(T0 + 5, role="default", valid_until=None, import_max_kw=200.0)
    book.admit(d1, T0)
    out = book.admit(d2, T0 + 5)
    assert [(a.command_id, a.status) for _r, a in out if a] == [
        (d2.command_id, "received"), (d1.command_id, "superseded")]
    assert book.default is d2 and book.in_force() == []


def test_restore_from_the_store_keeps_states_and_supersession() -> None:
    store = MemoryDispatchStore()
    book = CommandBook()
    old = record(minutes=60, seq=1)
    new = record(minutes=60, start_offset_s=600, seq=2)
    default = record(role="default", valid_until=None, seq=3)
    done = record(minutes=1, seq=4, issuer="x")
    for r in (old, new, default, done):
        book.admit(r, T0)
    book.update(T0 + 60)  # done: expired
    for r in (old, new, default, done):
        store.save_command(r.to_stored(T0 + 60))
    again = CommandBook()
    again.restore(store.open_commands())
    assert set(again.open) == {old.command_id, new.command_id}
    assert again.default is not None and again.default.command_id == default.command_id
    assert again.open[old.command_id].end_s == T0 + 600 and again.open[old.command_id].ending == "superseded"
    assert [a.status for _r, a in again.update(T0 + 600) if a] == ["superseded"]


def test_safe_mode_ticks_do_not_decide_applied() -> None:
    book = CommandBook()
    book.admit(record(), T0)
    assert book.check_applied(report(T0 + 1, 100.0, 0.0, safe_mode=True)) == []


def test_replay_gives_a_simulator_the_daemons_windows() -> None:
    old = record(minutes=60, seq=1).cmd
    new = record(minutes=60, start_offset_s=1200, seq=2).cmd
    cancelled = record(minutes=60, issuer="x", seq=3).cmd
    cancel = record(T0 + 300, kind="cancel", cancels=cancelled.command_id, issuer="x", seq=4).cmd
    got = {f.cmd.command_id: f.end_s for f in replay([(T0 + 600, new), (T0, old), (T0, cancelled), (T0 + 300, cancel)])}
    assert got == {old.command_id: T0 + 1200, new.command_id: new.end_s, cancelled.command_id: T0 + 300}
