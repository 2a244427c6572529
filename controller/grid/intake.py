"""Admission of an incoming dispatch command: every check, in order, and one verdict.

    MQTT 5 message expiry → schema / strict fields / signature / target (`validate_command`)
    → default shape → duplicate command_id (previous ack) → STALE / EXPIRED → issuer seq,
    persisted atomically with the command (OUT_OF_SEQUENCE) → admitted into the `CommandBook`.

A rejection changes nothing: no seq moves, no command is stored, the book is untouched. The
store is the link's `DispatchMemory` on its worker thread (`db_call`): duplicates and seqs are
answered from memory first, so a database outage changes no verdict. A command the database
cannot take now is still admitted (the site obeys it; memory keeps it and writes it later); its
`received` ack says so with reason `NOT_PERSISTED`, as a restart before the write would forget
it. Nothing here publishes. The link hands over what arrived together (`commands`): the batch is
looked up in one round trip and accepted in one transaction (with what memory had pending), with
the same verdicts as one at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from youxu.controller.grid.commands import CommandBook, CommandRecord, Transition
from youxu.controller.grid.dispatch_memory import DispatchMemory
from youxu.controller.grid.dispatch_schema import (
    EXPIRED,
    OUT_OF_SEQUENCE,
    DispatchCommand,
    Rejection,
    check_default,
    check_times,
    command_id_of,
    decode_json_object,
    validate_command,
)
from youxu.controller.storelink import StoredAck, StoredCommand
from youxu.drivers.mqtt_link import Inbound

log = logging.getLogger(__name__)

NOT_PERSISTED = "NOT_PERSISTED"  # reason on a `received` ack: accepted, held in memory until the database takes it
DbCall = Callable[..., Awaitable[Any]]


def _lookup(store: DispatchMemory, command_ids: list[str]) -> tuple[dict[str, StoredCommand], dict[str, StoredAck]]:
    """(the known commands among `command_ids`, the last acks of those): on the store's thread."""
    if not command_ids:
        return {}, {}
    known = store.find_commands(command_ids)
    return known, store.last_acks(sorted(known)) if known else {}


def _accept(store: DispatchMemory, recs: list[StoredCommand]) -> list[tuple[bool, str | None]]:
    """Each of `recs` accepted or not, and why it is not in the database yet when it is accepted but
    held in memory only: on the store's thread."""
    out: list[tuple[bool, str | None]] = []
    for rec, ok in zip(recs, store.accept_batch(recs), strict=True):
        unwritten = ok and store.unwritten(rec.command_id)
        out.append((ok, (store.last_error or "refused by the database") if unwritten else None))
    return out


def _last_seqs(store: DispatchMemory, issuers: list[str]) -> dict[str, int]:
    """The last seqs of `issuers` that have one: on the store's thread."""
    out: dict[str, int] = {}
    for issuer in dict.fromkeys(issuers):
        last = store.last_seq(issuer)
        if last is not None:
            out[issuer] = last
    return out


@dataclass
class Verdict:
    """What to do about one incoming command."""

    transitions: list[Transition] = field(default_factory=list)  # admitted: `received` and what it changed
    rejection: Rejection | None = None
    previous_ack: dict[str, Any] | None = None  # a duplicate: answer with this (marked duplicate)
    heard: str | None = None  # "command" (fresh, ends a fallback), "message" (the grid is there), or None
    store_error: str | None = None


@dataclass(frozen=True)
class Incoming:
    """A message from the `dispatch` or `default` topic, as the intake takes it."""

    msg: Inbound
    role: str  # "dispatch" | "default"
    topic_site: str | None


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
        return (await self.commands([Incoming(msg, role, topic_site)], now_s))[0]

    async def commands(self, items: Sequence[Incoming], now_s: float) -> list[Verdict]:
        """`command` for the batch's first items in arrival order, with one store round trip to look
        their ids up and one transaction that accepts all it admits, so a flood costs a few round
        trips per drain, not several per command. Returns the verdicts of `items[:n]` (n >= 1), the
        ones `command` gives one at a time; the caller answers them and hands the rest in again. The
        batch stops before a command_id it already holds: that copy is a duplicate, to be answered
        with the first one's ack once that is sent (memory has it at once). What the database cannot
        take, memory keeps (the verdicts are the same; the `received` acks say NOT_PERSISTED)."""
        checked: list[Verdict | DispatchCommand] = []
        seen: set[str] = set()
        for it in items:
            c = self._check(it, now_s)
            if isinstance(c, DispatchCommand):
                if c.command_id in seen:
                    break
                seen.add(c.command_id)
            checked.append(c)
        items = items[:len(checked)]
        assert self.store is not None
        store = self.store
        known, last_acks = await self.db_call(_lookup, store, sorted(seen), write_follows=True)
        verdicts: list[Verdict | None] = []
        admit: list[tuple[int, CommandRecord]] = []
        seqs = dict(self.seq_cache)  # as the batch moves them
        for it, c in zip(items, checked, strict=True):
            if isinstance(c, Verdict):
                verdicts.append(c)
                continue
            v = self._known(it, c, known, last_acks)
            if v is None and (rej := check_times(c, now_s, self.clock_skew_s,
                                                 retained_default=(it.role == "default"))) is not None:
                v = Verdict(rejection=rej)
            if v is None and c.issuer in seqs and c.seq <= seqs[c.issuer]:
                v = self._out_of_sequence(c)
            if v is None:
                seqs[c.issuer] = c.seq
                admit.append((len(verdicts), self._record(it, c, now_s)))
            verdicts.append(v)
        if admit:
            results = await self.db_call(_accept, store, [rec.to_stored(now_s) for _k, rec in admit])
            refused = [rec.cmd.issuer for (_k, rec), (accepted, _e) in zip(admit, results, strict=True)
                       if not accepted]
            last_seqs = await self.db_call(_last_seqs, store, refused) if refused else {}
            for (k, rec), (accepted, unwritten) in zip(admit, results, strict=True):
                issuer = rec.cmd.issuer
                if not accepted:
                    if issuer in last_seqs:
                        self.seq_cache[issuer] = max(self.seq_cache.get(issuer, -1), last_seqs[issuer])
                    verdicts[k] = self._out_of_sequence(rec.cmd)
                    continue
                self.seq_cache[issuer] = rec.cmd.seq
                with self.lock:
                    transitions = self.book.admit(rec, now_s)
                store_error = None
                if unwritten is not None:
                    log.error("command %s accepted, kept in memory until the database takes it: %s",
                              rec.command_id, unwritten)
                    store_error = f"command {rec.command_id} accepted but not yet stored ({unwritten}); kept in memory"
                    transitions = [(r, replace(a, reason=NOT_PERSISTED)
                                    if r is rec and a is not None and a.status == "received" else a)
                                   for r, a in transitions]
                verdicts[k] = Verdict(transitions=transitions, heard=self._heard(items[k]), store_error=store_error)
        return [v if v is not None else Verdict() for v in verdicts]

    def _check(self, it: Incoming, now_s: float) -> Verdict | DispatchCommand:
        """The checks that need no store: expiry, schema, signature, target, the default's shape."""
        msg = it.msg
        if msg.expiry_s is not None and now_s > msg.received_s + msg.expiry_s:
            obj = decode_json_object(msg.payload)
            cid = command_id_of(obj) if isinstance(obj, dict) else None
            return Verdict(rejection=Rejection(EXPIRED, "message_expiry", "MQTT message expired before it was handled",
                                               cid))
        cmd = validate_command(msg.payload, site_id=self.site_id, topic_site=it.topic_site, key=self.key,
                               strict=self.strict)
        if isinstance(cmd, Rejection):
            return Verdict(rejection=cmd)
        if it.role == "default":
            current = self.book.default
            if current is not None and current.command_id == cmd.command_id:
                return Verdict()  # the broker re-delivering the retained default
            if (rej := check_default(cmd)) is not None:
                return Verdict(rejection=rej)
        return cmd

    @staticmethod
    def _known(it: Incoming, cmd: DispatchCommand, known: dict[str, StoredCommand],
               last_acks: dict[str, StoredAck]) -> Verdict | None:
        """A command handled before: nothing (a retained copy), or its previous ack."""
        if cmd.command_id not in known:
            return None
        if it.msg.retain:
            return Verdict()
        last = last_acks.get(cmd.command_id)
        return Verdict(previous_ack=None if last is None else json.loads(last.payload) | {"duplicate": True},
                       heard="message")

    def _out_of_sequence(self, cmd: DispatchCommand) -> Verdict:
        last = self.seq_cache.get(cmd.issuer)
        return Verdict(rejection=Rejection(
            OUT_OF_SEQUENCE, "seq", f"{cmd.seq} is not above {cmd.issuer}'s last ({last})", cmd.command_id))

    @staticmethod
    def _record(it: Incoming, cmd: DispatchCommand, now_s: float) -> CommandRecord:
        msg = it.msg
        return CommandRecord(cmd=cmd, role=it.role, state="received", received_s=now_s,
                             payload=msg.payload.decode(), end_s=cmd.end_s, response_topic=msg.response_topic,
                             correlation_data=msg.correlation_data)

    @staticmethod
    def _heard(it: Incoming) -> str | None:
        return "command" if it.role == "dispatch" else (None if it.msg.retain else "message")
