"""`DispatchMemory`: what the site accepted is kept in memory first, and written behind.

The grid link's one view of its dispatch store. Every command accepted, every state change, every
ack and every issuer's seq is remembered here before it is written; while the database cannot
take writes (down, full, read-only, its file deleted) they wait here, in order, and are written
once it can, oldest first (`flush`, which the link calls in the background while records wait):
nothing newer reaches the database before what came before it. Until
then memory answers duplicates (the previous ack) and replays (the issuer's seq), so an outage
never turns an accepted command into an OUT_OF_SEQUENCE, nor lets a replay in.

What the database refuses outright (it would refuse it again) is logged, counted and kept in
memory only. When the store says its database was opened afresh (`generation`), the issuers' seqs
and the open commands are written again before anything else. While records wait, reads do not
try the database either (a database that hangs on connect would hold every answer up): memory
answers, as it knows every command accepted in this run, the open ones and every issuer's seq.

State changes and acks are not written one transaction each (with a rollback journal each commit
costs the volume's syncs): they go with the next accept's transaction, or with the link's next
`flush` (twice a second), in order.

All calls come from the link's single store thread (the asyncio side reads only `backlog`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass

from youxu.controller.storelink import (
    DispatchStore,
    StorageError,
    StorageRefused,
    StorageUnavailable,
    StoredAck,
    StoredCommand,
)

log = logging.getLogger(__name__)

KEEP_WRITTEN = 5000  # written (final) commands and acks still answered from memory, newest kept


@dataclass(frozen=True)
class _Op:
    kind: str  # "accept" | "save" | "ack" | "seq"
    value: StoredCommand | StoredAck | tuple[str, int, float]


class DispatchMemory:
    """A `DispatchStore` in front of another: memory is authoritative, the database is written behind."""

    def __init__(self, store: DispatchStore) -> None:
        self.store = store
        self._seqs: dict[str, int] = {}
        self._commands: OrderedDict[str, StoredCommand] = OrderedDict()
        self._acks: OrderedDict[str, StoredAck] = OrderedDict()
        self._backlog: deque[_Op] = deque()  # waiting for a database that was away
        self._pending: list[_Op] = []  # written with the next accept, or by the next `flush`
        self._unwritten: set[str] = set()  # accepted commands not (yet) in the database
        self._generation = getattr(store, "generation", 0)
        self.last_error = ""
        self.refused = 0
        self.written_late = 0  # records written after waiting in the backlog

    # ---- state for the link ----------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Records waiting for a database that was away (not those merely pending a commit)."""
        return len(self._backlog)

    def needs_write(self) -> bool:
        """Records wait, or the database was opened afresh and needs the seqs and open commands again."""
        return bool(self._backlog or self._pending) or getattr(self.store, "generation", 0) != self._generation

    def unwritten(self, command_id: str) -> bool:
        """True while an accepted command is known to memory only."""
        return command_id in self._unwritten

    def load(self) -> list[StoredCommand]:
        """The open commands, and every issuer's seq, from the database into memory (at start, or later
        when the database was away then); returns the commands memory did not know (what it knows
        already, it keeps as it has it: it is newer)."""
        recs = [r for r in self.store.open_commands() if r.command_id not in self._commands]
        seqs = self.store.issuer_seqs()
        for rec in recs:
            self._remember(rec)
        for issuer, seq in seqs.items():
            self._seqs[issuer] = max(seq, self._seqs.get(issuer, seq))
        return recs

    # ---- DispatchStore -----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    def last_seq(self, issuer: str) -> int | None:
        known = self._seqs.get(issuer)
        if self._backlog:  # the database is away: memory answers at once (it was seeded at start)
            return known
        try:
            stored = self.store.last_seq(issuer)
        except StorageError as exc:
            self._failed(exc)
            return known
        if stored is not None and (known is None or stored > known):
            self._seqs[issuer] = known = stored
        return known

    def issuer_seqs(self) -> dict[str, int]:
        return dict(self._seqs)

    def advance_seq(self, issuer: str, seq: int, at_s: float) -> bool:
        last = self.last_seq(issuer)
        if last is not None and seq <= last:
            return False
        self._seqs[issuer] = seq
        self._write(_Op("seq", (issuer, seq, at_s)))
        return True

    def accept(self, rec: StoredCommand) -> bool:
        if rec.command_id in self._commands:
            return False
        last = self._seqs.get(rec.issuer)
        if last is not None and rec.seq <= last:
            return False
        self._check_generation()
        if self._backlog and not self.last_error:  # not an outage: the database was opened afresh
            self.drain()
        if not self._backlog:  # else it waits behind the rest (the link drains in the background)
            batch, self._pending = [*self._pending, _Op("accept", rec)], []
            try:  # what waited goes in the same transaction: one commit for all
                ok = self.store.write_batch([(op.kind, op.value) for op in batch])[-1]
            except StorageUnavailable as exc:
                self._failed(exc)
                self._accepted(rec)
                self._backlog.extend(batch)
                return True
            except StorageRefused:  # one of them: find out which, one by one
                for op in batch[:-1]:
                    self._apply_or_drop(op)
                try:
                    ok = self.store.accept(rec)
                except StorageUnavailable as exc:
                    self._failed(exc)
                    self._accepted(rec)
                    self._backlog.append(batch[-1])
                    return True
                except StorageRefused as exc:
                    self._refused(exc, f"command {rec.command_id}")
                    self._accepted(rec)
                    return True
            if not ok:  # the database knows better (another writer): it decides
                self.last_seq(rec.issuer)
                return False
            self._seqs[rec.issuer] = rec.seq
            self._remember(rec)
            if self.needs_write() and not self._pending:  # opened afresh just now: the rest follows at once
                self.flush()
            return True
        self._accepted(rec)
        self._backlog.append(_Op("accept", rec))
        return True

    def save_command(self, rec: StoredCommand) -> None:
        self._remember(rec)
        self._write(_Op("save", rec))

    def find_command(self, command_id: str) -> StoredCommand | None:
        rec = self._commands.get(command_id)
        if rec is not None or self._backlog:
            return rec
        try:
            return self.store.find_command(command_id)
        except StorageError as exc:
            self._failed(exc)
            return None

    def open_commands(self) -> list[StoredCommand]:
        return sorted((r for r in self._commands.values() if not r.final), key=lambda r: (r.received_s, r.seq))

    def record_ack(self, ack: StoredAck) -> None:
        if ack.command_id is not None:
            self._acks[ack.command_id] = ack
            self._acks.move_to_end(ack.command_id)
            self._trim(self._acks)
        self._write(_Op("ack", ack))

    def last_ack(self, command_id: str) -> StoredAck | None:
        ack = self._acks.get(command_id)
        if ack is not None or self._backlog:
            return ack
        try:
            return self.store.last_ack(command_id)
        except StorageError as exc:
            self._failed(exc)
            return None

    def close(self) -> None:
        self.store.close()

    # ---- writing behind ------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Write what waits: after an outage oldest first, one by one, until the database stops taking
        it; else what is pending, in one transaction. True when nothing waits."""
        self._check_generation()
        if self._backlog:
            return self.drain()
        if not self._pending:
            return True
        batch, self._pending = self._pending, []
        try:
            self.store.write_batch([(op.kind, op.value) for op in batch])
        except StorageUnavailable as exc:
            self._failed(exc)
            self._backlog.extend(batch)
            return False
        except StorageRefused:
            for op in batch:
                self._apply_or_drop(op)
        return True

    def drain(self) -> bool:
        """Write what waits after an outage, oldest first, until the database stops taking it; True when
        nothing waits."""
        self._check_generation()
        while self._backlog:
            op = self._backlog[0]
            written = True
            try:
                self._apply(op)
            except StorageUnavailable as exc:
                self._failed(exc)
                return False
            except StorageRefused as exc:
                self._refused(exc, f"{op.kind} record")
                written = False
            self._backlog.popleft()
            self.written_late += written
            if op.kind == "accept" and written:
                self._unwritten.discard(op.value.command_id)  # type: ignore[union-attr]
        if self.last_error:
            log.warning("dispatch records written to the database again (%d after waiting)", self.written_late)
            self.last_error = ""
        return True

    def _write(self, op: _Op) -> None:
        """State changes and acks: with the next accept's transaction, or the link's next `flush`."""
        self._check_generation()
        if self._backlog:  # behind what waits: no new attempt per record while the database is away
            self._backlog.append(op)
        else:
            self._pending.append(op)

    def _apply_or_drop(self, op: _Op) -> None:
        try:
            self._apply(op)
        except StorageUnavailable as exc:
            self._failed(exc)
            self._backlog.append(op)
        except StorageRefused as exc:
            self._refused(exc, f"{op.kind} record")

    def _apply(self, op: _Op) -> None:
        if op.kind == "accept":
            rec = op.value
            assert isinstance(rec, StoredCommand)
            if not self.store.accept(rec):  # its seq or its row got there first (a rewrite): keep ours
                self.store.advance_seq(rec.issuer, rec.seq, rec.received_s)
                self.store.save_command(self._commands.get(rec.command_id, rec))
        elif op.kind == "save":
            assert isinstance(op.value, StoredCommand)
            self.store.save_command(op.value)
        elif op.kind == "ack":
            assert isinstance(op.value, StoredAck)
            self.store.record_ack(op.value)
        else:
            issuer, seq, at_s = op.value  # type: ignore[misc]
            self.store.advance_seq(issuer, seq, at_s)

    def _check_generation(self) -> None:
        """The database was opened afresh (empty): the seqs and open commands go first, then the rest."""
        gen = getattr(self.store, "generation", 0)
        if gen == self._generation:
            return
        self._generation = gen
        first = [_Op("seq", (issuer, seq, 0.0)) for issuer, seq in self._seqs.items()]
        first += [_Op("save", rec) for rec in self.open_commands()]
        first += [_Op("ack", self._acks[r.command_id]) for r in self.open_commands() if r.command_id in self._acks]
        log.warning("dispatch database opened afresh: writing %d issuers' seqs and %d open commands again",
                    len(self._seqs), len(self.open_commands()))
        self._backlog.extendleft(reversed(first + self._pending))
        self._pending = []

    # ---- memory --------------------------------------------------------------------------------------
    def _accepted(self, rec: StoredCommand) -> None:
        self._seqs[rec.issuer] = max(rec.seq, self._seqs.get(rec.issuer, rec.seq))
        self._remember(rec)
        self._unwritten.add(rec.command_id)

    def _remember(self, rec: StoredCommand) -> None:
        self._commands[rec.command_id] = rec
        self._commands.move_to_end(rec.command_id)
        self._trim(self._commands)

    def _trim(self, d: OrderedDict) -> None:
        """Forget the oldest written records beyond KEEP_WRITTEN (the database has them)."""
        if len(d) <= KEEP_WRITTEN + len(self._unwritten):
            return
        for key in list(d)[: len(d) - KEEP_WRITTEN]:
            v = d[key]
            if key in self._unwritten or (isinstance(v, StoredCommand) and not v.final):
                continue
            del d[key]

    def _failed(self, exc: StorageError) -> None:
        msg = str(exc)
        if not self.last_error:
            log.error("dispatch database unavailable, keeping records in memory: %s", msg)
        self.last_error = msg or type(exc).__name__

    def _refused(self, exc: StorageError, what: str) -> None:
        self.refused += 1
        log.error("dispatch database refused a %s, kept in memory only: %s", what, exc)
