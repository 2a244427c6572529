"""Admission of an incoming dispatch command: every check, in order, and one verdict.

    MQTT 5 message expiry → schema / strict fields / signature / target (`validate_command`)
    → default shape → duplicate command_id (previous ack) → STALE / EXPIRED → issuer seq,
    persisted atomically with the command (OUT_OF_SEQUENCE) → admitted into the `CommandBook`.

A rejection changes nothing: no seq moves, no command is stored, the book is untouched. The
store runs on the link's worker thread (`db_call`); nothing here publishes. The link hands over
what arrived together (`commands`): the batch is looked up in one round trip and accepted in one
transaction, with the same verdicts as one at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from youxu.controller.grid.commands import CommandBook, CommandRecord, Transition
from youxu.controller.grid.dispatch_schema import (
    EXPIRED,
    OUT_OF_SEQUENCE,
    DispatchCommand,
    Rejection,
    check_default,
    check_times,
    decode_json_object,
    validate_command,
)
from youxu.controller.storelink import DispatchStore, StoredAck, StoredCommand
from youxu.drivers.mqtt_link import Inbound

log = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]


def _lookup(store: DispatchStore, command_ids: list[str]) -> tuple[dict[str, StoredCommand], dict[str, StoredAck]]:
    """(the stored commands among `command_ids`, the last acks of those): on the store's thread."""
    if not command_ids:
        return {}, {}
    known = store.find_commands(command_ids)
    return known, store.last_acks(sorted(known)) if known else {}


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
    store: DispatchStore | None = None
    seq_cache: dict[str, int] = field(default_factory=dict)  # issuers' last seqs seen this run

    def remember_book(self) -> None:
        """Seed the seq cache from the commands restored into the book."""
        recs = [*self.book.open.values(), *([self.book.default] if self.book.default else [])]
        for rec in recs:
            self.seq_cache[rec.cmd.issuer] = max(self.seq_cache.get(rec.cmd.issuer, -1), rec.cmd.seq)

    async def commands(self, items: Sequence[Incoming], now_s: float) -> list[Verdict]:
        """`command` for the batch's first items in arrival order, with one store round trip to look
        their ids up and one transaction that accepts all it admits, so a flood costs a few round
        trips per drain, not several per command. Returns the verdicts of `items[:n]` (n >= 1), the
        ones `command` gives one at a time; the caller answers them and hands the rest in again. The
        batch stops before a command_id it already holds: that copy is a duplicate, to be answered
        with the first one's ack once that is sent and stored. A store that fails mid-batch has
        stored nothing (one transaction), and the batch is handled one at a time."""
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
        try:
            known, last_acks = await self.db_call(_lookup, store, sorted(seen))
        except Exception as exc:
            log.warning("dispatch store: batch lookup failed (%s); one command at a time", exc)
            return [await self.command(it.msg, it.role, it.topic_site, now_s) for it in items]
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
            try:
                ok = await self.db_call(store.accept_batch, [rec.to_stored(now_s) for _k, rec in admit])
            except Exception as exc:  # nothing was stored: the batch again, one command at a time
                log.warning("dispatch store: batch accept failed (%s); one command at a time", exc)
                return [await self.command(it.msg, it.role, it.topic_site, now_s) for it in items]
            refused = [c.cmd.issuer for (_k, c), accepted in zip(admit, ok, strict=True) if not accepted]
            last_seqs = await self._last_seqs(refused)
            for (k, rec), accepted in zip(admit, ok, strict=True):
                issuer = rec.cmd.issuer
                if not accepted:
                    if issuer in last_seqs:
                        self.seq_cache[issuer] = max(self.seq_cache.get(issuer, -1), last_seqs[issuer])
                    verdicts[k] = self._out_of_sequence(rec.cmd)
                    continue
                self.seq_cache[issuer] = rec.cmd.seq
                with self.lock:
                    transitions = self.book.admit(rec, now_s)
                verdicts[k] = Verdict(transitions=transitions, heard=self._heard(items[k]))
        return [v if v is not None else Verdict() for v in verdicts]

    def _check(self, it: Incoming, now_s: float) -> Verdict | DispatchCommand:
        """The checks that need no store: expiry, schema, signature, target, the default's shape."""
        msg = it.msg
        if msg.expiry_s is not None and now_s > msg.received_s + msg.expiry_s:
            obj = decode_json_object(msg.payload)
            cid = obj.get("command_id") if isinstance(obj, dict) else None
            return Verdict(rejection=Rejection(EXPIRED, "message_expiry", "MQTT message expired before it was handled",
                                               cid if isinstance(cid, str) else None))
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

    async def _last_seqs(self, issuers: list[str]) -> dict[str, int]:
        """The stored seqs of the issuers whose commands the store refused (to answer with)."""
        out: dict[str, int] = {}
        assert self.store is not None
        for issuer in dict.fromkeys(issuers):
            with contextlib.suppress(Exception):
                last = await self.db_call(self.store.last_seq, issuer)
                if last is not None:
                    out[issuer] = last
        return out

    async def command(self, msg: Inbound, role: str, topic_site: str | None, now_s: float) -> Verdict:
        """Check `msg` (from the `dispatch` or `default` topic) and admit it or say why not."""
        it = Incoming(msg, role, topic_site)
        cmd = self._check(it, now_s)
        if isinstance(cmd, Verdict):
            return cmd
        assert self.store is not None
        prev = await self.db_call(self.store.find_command, cmd.command_id)
        if prev is not None:
            last = None if msg.retain else await self.db_call(self.store.last_ack, cmd.command_id)
            known = self._known(it, cmd, {cmd.command_id: prev}, {} if last is None else {cmd.command_id: last})
            assert known is not None
            return known
        rej = check_times(cmd, now_s, self.clock_skew_s, retained_default=(role == "default"))
        if rej is not None:
            return Verdict(rejection=rej)
        rec = self._record(it, cmd, now_s)
        accepted, store_error = await self._accept_seq(rec, now_s)
        if not accepted:
            return self._out_of_sequence(cmd)
        with self.lock:
            transitions = self.book.admit(rec, now_s)
        return Verdict(transitions=transitions, heard=self._heard(it), store_error=store_error)

    async def _accept_seq(self, rec: CommandRecord, now_s: float) -> tuple[bool, str | None]:
        """Persist the command with its issuer's seq atomically; a replay after a restart fails here."""
        issuer, seq = rec.cmd.issuer, rec.cmd.seq
        if issuer in self.seq_cache and seq <= self.seq_cache[issuer]:
            return False, None
        assert self.store is not None
        error = None
        try:
            ok = await self.db_call(self.store.accept, rec.to_stored(now_s))
        except Exception as exc:  # database down: the grid's command still counts, in memory
            log.error("dispatch store unavailable (%s); command %s accepted in memory only", exc, rec.command_id)
            error, ok = f"command {rec.command_id} not persisted: {exc}", True
        if not ok:
            with contextlib.suppress(Exception):
                last = await self.db_call(self.store.last_seq, issuer)
                if last is not None:
                    self.seq_cache[issuer] = max(self.seq_cache.get(issuer, -1), last)
            return False, None
        self.seq_cache[issuer] = seq
        return True, error
