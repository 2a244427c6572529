"""Admission of an incoming dispatch command: every check, in order, and one verdict.

    MQTT 5 message expiry → schema / strict fields / signature / target (`validate_command`)
    → default shape → duplicate command_id (previous ack) → STALE / EXPIRED → issuer seq,
    persisted atomically with the command (OUT_OF_SEQUENCE) → admitted into the `CommandBook`.

A rejection changes nothing: no seq moves, no command is stored, the book is untouched. The
store is the link's `DispatchMemory` on its worker thread (`db_call`): duplicates and seqs are
answered from memory first, so a database outage changes no verdict. A command the database
cannot take now is still admitted (the site obeys it; memory keeps it and writes it later); its
`received` ack says so with reason `NOT_PERSISTED`, as a restart before the write would forget
it. Nothing here publishes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from youxu.controller.grid.commands import CommandBook, CommandRecord, Transition
from youxu.controller.grid.dispatch_memory import DispatchMemory
from youxu.controller.grid.dispatch_schema import (
    EXPIRED,
    OUT_OF_SEQUENCE,
    Rejection,
    check_default,
    check_times,
    command_id_of,
    decode_json_object,
    validate_command,
)
from youxu.drivers.mqtt_link import Inbound

log = logging.getLogger(__name__)

NOT_PERSISTED = "NOT_PERSISTED"  # reason on a `received` ack: accepted, held in memory until the database takes it
DbCall = Callable[..., Awaitable[Any]]


@dataclass
class Verdict:
    """What to do about one incoming command."""

    transitions: list[Transition] = field(default_factory=list)  # admitted: `received` and what it changed
    rejection: Rejection | None = None
    previous_ack: dict[str, Any] | None = None  # a duplicate: answer with this (marked duplicate)
    heard: str | None = None  # "command" (fresh, ends a fallback), "message" (the grid is there), or None
    store_error: str | None = None


@dataclass
class CommandIntake:
    site_id: str
    book: CommandBook
    db_call: DbCall
    key: bytes | None = None
    strict: bool = False
    clock_skew_s: float = 300.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    store: DispatchMemory | None = None
    seq_cache: dict[str, int] = field(default_factory=dict)  # issuers' last seqs seen this run

    def remember_book(self) -> None:
        """Seed the seq cache from the commands restored into the book."""
        recs = [*self.book.open.values(), *([self.book.default] if self.book.default else [])]
        for rec in recs:
            self.seq_cache[rec.cmd.issuer] = max(self.seq_cache.get(rec.cmd.issuer, -1), rec.cmd.seq)

    async def command(self, msg: Inbound, role: str, topic_site: str | None, now_s: float) -> Verdict:
        """Check `msg` (from the `dispatch` or `default` topic) and admit it or say why not."""
        if msg.expiry_s is not None and now_s > msg.received_s + msg.expiry_s:
            obj = decode_json_object(msg.payload)
            cid = command_id_of(obj) if isinstance(obj, dict) else None
            return Verdict(rejection=Rejection(EXPIRED, "message_expiry", "MQTT message expired before it was handled",
                                               cid))
        cmd = validate_command(msg.payload, site_id=self.site_id, topic_site=topic_site, key=self.key,
                               strict=self.strict)
        if isinstance(cmd, Rejection):
            return Verdict(rejection=cmd)
        if role == "default":
            current = self.book.default
            if current is not None and current.command_id == cmd.command_id:
                return Verdict()  # the broker re-delivering the retained default
            if (rej := check_default(cmd)) is not None:
                return Verdict(rejection=rej)
        assert self.store is not None
        prev = await self.db_call(self.store.find_command, cmd.command_id)
        if prev is not None:
            if msg.retain:
                return Verdict()  # a retained copy of something handled before
            last = await self.db_call(self.store.last_ack, cmd.command_id)
            return Verdict(previous_ack=None if last is None else json.loads(last.payload) | {"duplicate": True},
                           heard="message")
        rej = check_times(cmd, now_s, self.clock_skew_s, retained_default=(role == "default"))
        if rej is not None:
            return Verdict(rejection=rej)
        rec = CommandRecord(cmd=cmd, role=role, state="received", received_s=now_s, payload=msg.payload.decode(),
                            end_s=cmd.end_s, response_topic=msg.response_topic, correlation_data=msg.correlation_data)
        accepted, store_error = await self._accept_seq(rec, now_s)
        if not accepted:
            last = self.seq_cache.get(cmd.issuer)
            return Verdict(rejection=Rejection(
                OUT_OF_SEQUENCE, "seq", f"{cmd.seq} is not above {cmd.issuer}'s last ({last})", cmd.command_id))
        with self.lock:
            transitions = self.book.admit(rec, now_s)
        if store_error is not None:
            transitions = [(r, replace(a, reason=NOT_PERSISTED) if r is rec and a is not None and a.status == "received"
                            else a) for r, a in transitions]
        heard = "command" if role == "dispatch" else (None if msg.retain else "message")
        return Verdict(transitions=transitions, heard=heard, store_error=store_error)

    async def _accept_seq(self, rec: CommandRecord, now_s: float) -> tuple[bool, str | None]:
        """Persist the command with its issuer's seq atomically (a replay after a restart fails here), or,
        while the database cannot take it, keep both in memory to be written before anything newer."""
        issuer, seq = rec.cmd.issuer, rec.cmd.seq
        if issuer in self.seq_cache and seq <= self.seq_cache[issuer]:
            return False, None
        assert self.store is not None
        store = self.store
        if not await self.db_call(store.accept, rec.to_stored(now_s)):
            last = await self.db_call(store.last_seq, issuer)
            if last is not None:
                self.seq_cache[issuer] = max(self.seq_cache.get(issuer, -1), last)
            return False, None
        self.seq_cache[issuer] = seq
        if store.unwritten(rec.command_id):
            reason = store.last_error or "refused by the database"
            log.error("command %s accepted, kept in memory until the database takes it: %s", rec.command_id, reason)
            return True, f"command {rec.command_id} accepted but not yet stored ({reason}); kept in memory"
        return True, None
