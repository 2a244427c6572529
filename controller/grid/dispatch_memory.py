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

Writes are grouped (with a rollback journal each commit costs the volume's syncs): a batch of
commands that arrived together is accepted in one `write_batch` transaction (`accept_batch`), and
state changes and acks are not written one transaction each: they go with the next accept's
transaction, or with a `flush` as soon as the link's store thread has nothing else to do (at the
latest with the link's background flush, twice a second), in order.

All calls come from the link's single store thread (the asyncio side reads only `backlog`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
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

    @property
    def pending(self) -> int:
        """Records to write with the next transaction while the database takes writes."""
        return 0 if self._backlog else len(self._pending)

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
        return self.accept_batch([rec])[0]

    def accept_batch(self, recs: Sequence[StoredCommand]) -> list[bool]:
        """`accept` for each of `recs` in order (a later one sees the seqs and ids the earlier ones took).
        Memory decides first; what it admits goes to the database in ONE transaction together with
        what was pending (a group commit), and the database has the last word (another writer). While
        the database cannot take them they are accepted all the same, kept and written later."""
        out: list[bool] = []
        fresh: list[int] = []  # indexes of those memory admits
        ids: set[str] = set()
        seqs: dict[str, int] = {}  # as the batch moves them
        for rec in recs:
            last = seqs.get(rec.issuer, self._seqs.get(rec.issuer))
            if rec.command_id in self._commands or rec.command_id in ids or (last is not None and rec.seq <= last):
                out.append(False)
                continue
            ids.add(rec.command_id)
            seqs[rec.issuer] = rec.seq
            fresh.append(len(out))
            out.append(True)
        if not fresh:
            return out
        cands = [recs[k] for k in fresh]
        self._check_generation()
        if self._backlog and not self.last_error:  # not an outage: the database was opened afresh
            self.drain()
        if self._backlog:  # it waits behind the rest (the link drains in the background)
            for rec in cands:
                self._accepted(rec)
                self._backlog.append(_Op("accept", rec))
            return out
        pending = self._pending
        batch, self._pending = [*pending, *(_Op("accept", rec) for rec in cands)], []
        try:  # what waited goes in the same transaction: one commit for all
            stored: list[bool | None] = list(self.store.write_batch([(op.kind, op.value) for op in batch]))
            stored = stored[len(stored) - len(cands):]
        except StorageUnavailable as exc:
            self._failed(exc)
            for rec in cands:
                self._accepted(rec)
            self._backlog.extend(batch)
            return out
        except StorageRefused:  # one of them: find out which, one by one
            for op in pending:
                self._apply_or_drop(op)
            stored = [self._accept_alone(rec) for rec in cands]
        except BaseException:  # not the database's (a bug): what was pending stays pending
            self._pending[:0] = pending
            raise
        for k, rec, ok in zip(fresh, cands, stored, strict=True):
            if ok is None:  # kept in memory
                continue
            if not ok:  # the database knows better (another writer): it decides
                self.last_seq(rec.issuer)
                out[k] = False
                continue
            self._seqs[rec.issuer] = max(rec.seq, self._seqs.get(rec.issuer, rec.seq))
            self._remember(rec)
        if self.needs_write() and not self._pending:  # opened afresh just now: the rest follows at once
            self.flush()
        return out

    def _accept_alone(self, rec: StoredCommand) -> bool | None:
        """`rec` written on its own after its batch was refused: the database's answer, or None when it
        is kept in memory (the database is away, or refuses this one)."""
        if not self._backlog:
            try:
                return self.store.accept(rec)
            except StorageUnavailable as exc:
                self._failed(exc)
            except StorageRefused as exc:
                self._refused(exc, f"command {rec.command_id}")
                self._accepted(rec)
                return None
        self._accepted(rec)
        self._backlog.append(_Op("accept", rec))
        return None

    def save_command(self, rec: StoredCommand) -> None:
        self._remember(rec)
        self._write(_Op("save", rec))

    def write_behind(self, commands: Sequence[StoredCommand], acks: Sequence[StoredAck]) -> None:
        """State changes and acks of one turn of the link's loop, in order: remembered now, written with
        the next accept's transaction or the next `flush`."""
        for rec in commands:
            self.save_command(rec)
        for ack in acks:
            self.record_ack(ack)

    def find_command(self, command_id: str) -> StoredCommand | None:
        rec = self._commands.get(command_id)
        if rec is not None or self._backlog:
            return rec
        try:
            return self.store.find_command(command_id)
        except StorageError as exc:
            self._failed(exc)
            return None

    def find_commands(self, command_ids: Sequence[str]) -> dict[str, StoredCommand]:
        """`find_command` for a batch: memory first, the database once for the rest."""
        out = {cid: self._commands[cid] for cid in command_ids if cid in self._commands}
        rest = [cid for cid in dict.fromkeys(command_ids) if cid not in out]
        if rest and not self._backlog:
            try:
                out.update(self.store.find_commands(rest))
            except StorageError as exc:
                self._failed(exc)
        return out

    def last_acks(self, command_ids: Sequence[str]) -> dict[str, StoredAck]:
        """`last_ack` for a batch: memory first, the database for the rest."""
        out = {cid: self._acks[cid] for cid in command_ids if cid in self._acks}
        rest = [cid for cid in dict.fromkeys(command_ids) if cid not in out]
        if rest and not self._backlog:
            try:
                out.update(self.store.last_acks(rest))
            except StorageError as exc:
                self._failed(exc)
        return out

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
        if self._backlog and not self.drain():
            return False
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
