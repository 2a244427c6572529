"""The life of an accepted dispatch command, as an explicit state machine.

    received ──(valid_from reached)──► active ──► completed   (ran its course, was applied)
        │                                 ├─────► expired     (ended without ever being applied)
        └───────────────┬─────────────────┼─────► superseded  (a newer command took its place)
                        └─────────────────┴─────► cancelled   (a `cancel` ended it)

Acknowledgements come out of the transitions: `received` on admission, `applied` (with the
measured `achieved_kw`, or reason `INFEASIBLE`) once a tick shows the site within the command, or
shows it outside a limit while settled (decided with the limit in force, every pile already at
what that decision tells it, and the load that decision projects outside too: as close as
physics allows), or the grace time has passed (for a setpoint, at least the time the controller
needs to plan with it), then the final state. A tick that did not measure what the command is
about (meter or piles unread) judges nothing.
Supersession: a new limit or setpoint from the same issuer with the same scope whose window
overlaps an older one ends the older one at the new one's start. The book is pure: times are
passed in, nothing is published or stored here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import numpy as np

from youxu.controller.grid.arbitration import InForce, values_at, winning_setpoints
from youxu.controller.grid.dispatch_schema import DispatchCommand, format_rfc3339, parse_stored
from youxu.controller.gridlink import TickReport
from youxu.controller.storelink import StoredCommand

log = logging.getLogger(__name__)

ACK_SCHEMA = "youxu.ack/1"
INFEASIBLE = "INFEASIBLE"
NOT_IN_FORCE = "NOT_IN_FORCE"


@dataclass(frozen=True)
class Ack:
    """One acknowledgement (`youxu.ack/1`); `field` and `detail` explain rejections."""

    command_id: str | None
    status: str  # received | applied | completed | superseded | cancelled | expired | rejected
    at_s: float
    reason: str | None = None
    achieved_kw: float | None = None
    field: str | None = None
    detail: str | None = None

    def payload(self, tz: tzinfo) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": ACK_SCHEMA,
            "command_id": self.command_id,
            "status": self.status,
            "reason": self.reason,
            "at": format_rfc3339(self.at_s, tz),
            "achieved_kw": None if self.achieved_kw is None else round(float(self.achieved_kw), 3),
        }
        if self.field is not None:
            out["field"] = self.field
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class CommandRecord:
    """An accepted command and where it is in its life."""

    cmd: DispatchCommand
    role: str  # "dispatch" | "default"
    state: str
    received_s: float
    payload: str
    end_s: float  # effective end: valid_until, or earlier when superseded/cancelled
    applied_s: float | None = None
    ending: str | None = None  # "superseded" when end_s was brought forward by a newer command
    response_topic: str | None = None
    correlation_data: bytes | None = None

    @property
    def command_id(self) -> str:
        return self.cmd.command_id

    def in_force(self) -> InForce:
        return InForce(self.cmd, self.end_s)

    def to_stored(self, now_s: float) -> StoredCommand:
        return StoredCommand(
            command_id=self.cmd.command_id, issuer=self.cmd.issuer, seq=self.cmd.seq, role=self.role,
            state=self.state, payload=self.payload, received_s=self.received_s,
            end_s=None if math.isinf(self.end_s) else self.end_s, applied_s=self.applied_s,
            response_topic=self.response_topic, correlation_data=self.correlation_data, updated_s=now_s,
        )

    @staticmethod
    def from_stored(s: StoredCommand) -> CommandRecord:
        cmd = parse_stored(s.payload)
        end_s = math.inf if s.end_s is None else s.end_s
        return CommandRecord(
            cmd=cmd, role=s.role, state=s.state, received_s=s.received_s, payload=s.payload, end_s=end_s,
            applied_s=s.applied_s, ending="superseded" if end_s < cmd.end_s else None,
            response_topic=s.response_topic, correlation_data=s.correlation_data,
        )


Transition = tuple[CommandRecord, Ack | None]  # a changed record, and the ack to send (if any)


def _overlap(a: DispatchCommand, a_end_s: float, b: DispatchCommand) -> bool:
    return a.start_s < b.end_s and b.start_s < a_end_s


class CommandBook:
    """The commands the site holds (open dispatch commands and the default) and their transitions."""

    def __init__(self, *, apply_grace_s: float = 30.0, setpoint_tolerance_kw: float = 2.0,
                 limit_tolerance_kw: float = 0.1, setpoint_grace_s: float = 0.0) -> None:
        self.apply_grace_s = apply_grace_s
        # a setpoint is followed through the plan, so it is not judged before the controller has planned
        # with it (a limit is held by the safety layer from the next tick, whatever the plan says)
        self.setpoint_grace_s = max(apply_grace_s, setpoint_grace_s)
        self.setpoint_tolerance_kw = setpoint_tolerance_kw
        self.limit_tolerance_kw = limit_tolerance_kw
        self.open: dict[str, CommandRecord] = {}
        self.default: CommandRecord | None = None

    # ---- views -----------------------------------------------------------------------
    def in_force(self) -> list[InForce]:
        return [r.in_force() for r in self.open.values()]

    def default_command(self) -> DispatchCommand | None:
        return None if self.default is None else self.default.cmd

    def get(self, command_id: str) -> CommandRecord | None:
        if self.default is not None and self.default.command_id == command_id:
            return self.default
        return self.open.get(command_id)

    # ---- restore -----------------------------------------------------------------------
    def restore(self, stored: list[StoredCommand]) -> None:
        for s in stored:
            if s.final:
                continue
            try:
                rec = CommandRecord.from_stored(s)
            except (ValueError, json.JSONDecodeError) as exc:
                log.error("stored command %s cannot be read back (%s); dropped", s.command_id, exc)
                continue
            if rec.role == "default":
                self.default = rec
            else:
                self.open[rec.command_id] = rec

    # ---- admission -----------------------------------------------------------------
    def admit(self, rec: CommandRecord, now_s: float) -> list[Transition]:
        """Take an accepted command in; returns its `received` ack and what it changed."""
        out: list[Transition] = [(rec, Ack(rec.command_id, "received", now_s))]
        cmd = rec.cmd
        if rec.role == "default":
            old = self.default
            rec.state = "active"
            self.default = rec
            if old is not None:
                old.state, old.end_s, old.ending = "superseded", now_s, "superseded"
                out.append((old, Ack(old.command_id, "superseded", now_s, reason=f"by {cmd.command_id}")))
            return out
        if cmd.type == "cancel":
            return out + self._cancel(rec, now_s)
        for old in list(self.open.values()):
            c = old.cmd
            if (c.issuer, c.type, c.scope) == (cmd.issuer, cmd.type, cmd.scope) and _overlap(c, old.end_s, cmd):
                old.end_s = min(old.end_s, max(cmd.start_s, now_s))
                old.ending = "superseded"
                out.append((old, None))
        self.open[rec.command_id] = rec
        return out + self.update(now_s)

    def _cancel(self, rec: CommandRecord, now_s: float) -> list[Transition]:
        target_id = rec.cmd.cancels or ""
        target = self.get(target_id)
        rec.state, rec.end_s = "completed", now_s
        out: list[Transition] = []
        if target is None:
            out.append((rec, Ack(rec.command_id, "completed", now_s, reason=NOT_IN_FORCE,
                                 detail=f"{target_id} is not in force")))
            return out
        target.state, target.end_s = "cancelled", now_s
        if target is self.default:
            self.default = None
        else:
            self.open.pop(target_id, None)
        out.append((target, Ack(target_id, "cancelled", now_s, reason=f"by {rec.command_id}")))
        out.append((rec, Ack(rec.command_id, "completed", now_s)))
        return out

    # ---- time ------------------------------------------------------------------------
    def update(self, now_s: float) -> list[Transition]:
        """Time-driven transitions: received → active, and the end of each command."""
        out: list[Transition] = []
        for rec in list(self.open.values()):
            if now_s >= rec.end_s:
                if rec.ending == "superseded":
                    final, reason = "superseded", None
                else:
                    final = "completed" if rec.applied_s is not None else "expired"
                    reason = None
                rec.state = final
                del self.open[rec.command_id]
                out.append((rec, Ack(rec.command_id, final, now_s, reason=reason)))
            elif rec.state == "received" and now_s >= rec.cmd.start_s:
                rec.state = "active"
                out.append((rec, None))
        return out

    # ---- applied -------------------------------------------------------------------
    def check_applied(self, report: TickReport) -> list[Transition]:
        """`applied` acks decided from what the tick measured."""
        if report.safe_mode:
            return []
        t = np.array([report.t_s], dtype=float)
        winner, ranked = winning_setpoints(self.in_force(), t)
        winner_id = ranked[int(winner[0])].cmd.command_id if winner[0] >= 0 else None
        out: list[Transition] = []
        for rec in self.open.values():
            if rec.state != "active" or rec.applied_s is not None or rec.cmd.type not in ("limit", "setpoint"):
                continue
            if rec.cmd.scope == "site":
                measured = report.total_kw if report.meter_ok else None
            else:
                measured = None if report.unreachable_piles else report.ev_kw
            if measured is None or not math.isfinite(measured):  # not measured this tick: nothing to judge
                continue
            within = self._within(rec, t, measured, winner_id)
            if within is None:
                continue
            since_s = max(rec.received_s, float(rec.cmd.period_starts_s()[0]))
            grace_s = self.setpoint_grace_s if rec.cmd.type == "setpoint" else self.apply_grace_s
            if within:
                reason = None
            elif report.t_s - since_s >= grace_s:
                reason = INFEASIBLE
            elif (rec.cmd.type == "limit" and report.settled and report.t_s >= since_s
                  and self._within(rec, t, measured + _steering_kw(report), winner_id) is False):
                # decided with the limit in force, the piles already draw what that decision tells them,
                # and even that decision leaves the site outside: as close as physics allows
                reason = INFEASIBLE
            else:
                continue
            rec.applied_s = report.t_s
            out.append((rec, Ack(rec.command_id, "applied", report.t_s, reason=reason, achieved_kw=measured)))
        return out

    def _within(self, rec: CommandRecord, t: np.ndarray, measured: float, winner_id: str | None) -> bool | None:
        """Whether the measurement satisfies the command now; None when the command does not apply now."""
        f = rec.in_force()
        if rec.cmd.type == "setpoint":
            if winner_id != rec.command_id:
                return None
            sp = float(values_at(f, t, "setpoint_kw")[0])
            return None if math.isnan(sp) else abs(measured - sp) <= self.setpoint_tolerance_kw
        imp = float(values_at(f, t, "import_max_kw")[0])
        exp = float(values_at(f, t, "export_max_kw")[0])
        if math.isnan(imp) and math.isnan(exp):
            return None
        ok_imp = math.isnan(imp) or measured <= imp + self.limit_tolerance_kw
        ok_exp = math.isnan(exp) or measured >= -exp - self.limit_tolerance_kw
        return ok_imp and ok_exp


def _steering_kw(report: TickReport) -> float:
    """What the tick's setpoints change from what the reachable piles draw now (projected less measured)."""
    gone = set(report.unreachable_piles)
    return sum(sp - report.pile_power_kw.get(pid, 0.0) for pid, sp in report.setpoints_kw.items() if pid not in gone)


def replay(arrivals: Iterable[tuple[float, DispatchCommand]]) -> list[InForce]:
    """Limits and setpoints with the windows the daemon would give them, for a simulator that knows
    every command's arrival time (epoch s) in advance: supersession and cancels as in `CommandBook`."""
    book = CommandBook()
    kept: list[CommandRecord] = []
    for at_s, cmd in sorted(arrivals, key=lambda a: a[0]):
        rec = CommandRecord(cmd=cmd, role="dispatch", state="received", received_s=at_s, payload="", end_s=cmd.end_s)
        book.admit(rec, at_s)
        if cmd.type != "cancel":
            kept.append(rec)
    return [r.in_force() for r in kept]


def ack_json(ack: Ack, tz: tzinfo) -> str:
    return json.dumps(ack.payload(tz), separators=(",", ":"), ensure_ascii=False)
