"""What the dispatch link must remember across restarts: commands, acks, issuers' sequence numbers.

Two implementations of one small protocol: `MemoryDispatchStore` (tests, simulator) and
`SqlDispatchStore` (SQLAlchemy 2.x; SQLite by default, PostgreSQL in larger installs). The link
calls the store off the control loop (a single worker thread), so a slow database never delays
a tick; `accept` is atomic so that a command is stored if and only if its issuer's sequence
number moved past it, and a replay after a restart is refused. A flood is taken in batches:
`write_batch` writes accepts, state changes, acks and seqs in order in one transaction (a group
commit: with a rollback journal every commit costs the volume's syncs), and `find_commands` /
`last_acks` look a batch's ids up in one round trip.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import ParamSpec, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from youxu.controller.store import database
from youxu.controller.store.values import is_outage
from youxu.controller.storelink import (
    FINAL_STATES,
    StorageRefused,
    StorageUnavailable,
    StoredAck,
    StoredCommand,
    StoreOp,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class MemoryDispatchStore:
    """The protocol in memory (thread-safe); forgets everything when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seqs: dict[str, int] = {}
        self._commands: dict[str, StoredCommand] = {}
        self._acks: list[StoredAck] = []

    generation = 0

    def last_seq(self, issuer: str) -> int | None:
        with self._lock:
            return self._seqs.get(issuer)

    def issuer_seqs(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seqs)

    def advance_seq(self, issuer: str, seq: int, at_s: float) -> bool:
        with self._lock:
            return self._advance(issuer, seq)

    def _advance(self, issuer: str, seq: int) -> bool:
        last = self._seqs.get(issuer)
        if last is not None and seq <= last:
            return False
        self._seqs[issuer] = seq
        return True

    def accept(self, rec: StoredCommand) -> bool:
        with self._lock:
            if rec.command_id in self._commands or not self._advance(rec.issuer, rec.seq):
                return False
            self._commands[rec.command_id] = rec
            return True

    def save_command(self, rec: StoredCommand) -> None:
        with self._lock:
            self._commands[rec.command_id] = rec

    def find_command(self, command_id: str) -> StoredCommand | None:
        with self._lock:
            return self._commands.get(command_id)

    def find_commands(self, command_ids: Sequence[str]) -> dict[str, StoredCommand]:
        with self._lock:
            return {c: self._commands[c] for c in command_ids if c in self._commands}

    def open_commands(self) -> list[StoredCommand]:
        with self._lock:
            recs = [r for r in self._commands.values() if not r.final]
        return sorted(recs, key=lambda r: (r.received_s, r.seq))

    def record_ack(self, ack: StoredAck) -> None:
        with self._lock:
            self._acks.append(ack)

    def last_ack(self, command_id: str) -> StoredAck | None:
        with self._lock:
            for ack in reversed(self._acks):
                if ack.command_id == command_id:
                    return ack
        return None

    def last_acks(self, command_ids: Sequence[str]) -> dict[str, StoredAck]:
        wanted = set(command_ids)
        out: dict[str, StoredAck] = {}
        with self._lock:
            for ack in self._acks:
                if ack.command_id in wanted:
                    out[ack.command_id] = ack
        return out

    def acks(self) -> list[StoredAck]:
        with self._lock:
            return list(self._acks)

    def write_batch(self, ops: Sequence[StoreOp]) -> list[bool]:
        out: list[bool] = []
        with self._lock:  # all at once for any other thread, as one transaction
            for kind, value in ops:
                if kind == "accept":
                    assert isinstance(value, StoredCommand)
                    ok = value.command_id not in self._commands and self._advance(value.issuer, value.seq)
                    if ok:
                        self._commands[value.command_id] = value
                    out.append(ok)
                elif kind == "save":
                    assert isinstance(value, StoredCommand)
                    self._commands[value.command_id] = value
                elif kind == "ack":
                    assert isinstance(value, StoredAck)
                    self._acks.append(value)
                elif kind == "seq":
                    issuer, seq, _at_s = value  # type: ignore[misc]
                    self._advance(issuer, seq)
                else:
                    raise ValueError(f"unknown dispatch store op {kind!r}")
        return out

    def close(self) -> None:
        return None


metadata = MetaData()

commands_table = Table(
    "dispatch_commands",
    metadata,
    Column("command_id", String(128), primary_key=True),
    Column("issuer", String(128), nullable=False, index=True),
    Column("seq", BigInteger, nullable=False),
    Column("role", String(16), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("payload", Text, nullable=False),
    Column("received_s", Float, nullable=False),
    Column("end_s", Float),
    Column("applied_s", Float),
    Column("response_topic", String(1024)),
    Column("correlation_data", LargeBinary),
    Column("updated_s", Float, nullable=False),
)

acks_table = Table(
    "dispatch_acks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("command_id", String(128), index=True),
    Column("status", String(16), nullable=False),
    Column("reason", String(64)),
    Column("at_s", Float, nullable=False),
    Column("payload", Text, nullable=False),
)

issuer_seqs_table = Table(
    "dispatch_issuer_seqs",
    metadata,
    Column("issuer", String(128), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("updated_s", Float, nullable=False),
)


class _Conflict(Exception):
    """An issuer's seq changed under a batch (another writer): the batch is rolled back."""


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    """`items` in slices small enough for any database's limit on bound parameters."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def _row_to_command(row: object) -> StoredCommand:
    m = row._mapping  # type: ignore[attr-defined]
    return StoredCommand(
        command_id=m["command_id"], issuer=m["issuer"], seq=int(m["seq"]), role=m["role"], state=m["state"],
        payload=m["payload"], received_s=m["received_s"], end_s=m["end_s"], applied_s=m["applied_s"],
        response_topic=m["response_topic"],
        correlation_data=bytes(m["correlation_data"]) if m["correlation_data"] is not None else None,
        updated_s=m["updated_s"],
    )


def _command_values(rec: StoredCommand) -> dict[str, object]:
    return {
        "command_id": rec.command_id, "issuer": rec.issuer, "seq": rec.seq, "role": rec.role, "state": rec.state,
        "payload": rec.payload, "received_s": rec.received_s, "end_s": rec.end_s, "applied_s": rec.applied_s,
        "response_topic": rec.response_topic, "correlation_data": rec.correlation_data,
        "updated_s": rec.updated_s or rec.received_s,
    }


def _storage_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """The database's errors as the protocol's: unavailable (try later) or refused (this record)."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            database.ensure_file(args[0].engine)  # type: ignore[attr-defined]  # never into a deleted file
            args[0]._create_tables()  # type: ignore[attr-defined]
            return fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if is_outage(exc):
                raise StorageUnavailable(msg) from exc
            raise StorageRefused(msg) from exc
        except UnicodeError as exc:  # text the driver cannot encode
            raise StorageRefused(f"{type(exc).__name__}: {exc}") from exc

    return call


class SqlDispatchStore:
    """The protocol on a SQLAlchemy database (tables `dispatch_commands`, `dispatch_acks`,
    `dispatch_issuer_seqs`, created when missing)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tables = False
        try:
            self._create_tables()
        except SQLAlchemyError as exc:  # the database is away: opened all the same, tables created later
            log.error("dispatch tables not checked, the database is unavailable: %s", str(exc).splitlines()[0][:200])

    def _create_tables(self) -> None:
        if not self._tables:
            metadata.create_all(self.engine)
            self._tables = True

    @property
    def generation(self) -> int:
        watched = database.sqlite_file(self.engine)
        return 0 if watched is None else watched.generation

    @classmethod
    def from_url(cls, url: str) -> SqlDispatchStore:
        return cls(database.make_engine(url))

    @_storage_errors
    def last_seq(self, issuer: str) -> int | None:
        with self.engine.connect() as conn:
            v = conn.execute(
                select(issuer_seqs_table.c.last_seq).where(issuer_seqs_table.c.issuer == issuer)
            ).scalar_one_or_none()
        return None if v is None else int(v)

    @staticmethod
    def _advance(conn: Connection, issuer: str, seq: int, at_s: float) -> bool:
        t = issuer_seqs_table
        res = conn.execute(
            update(t).where(t.c.issuer == issuer, t.c.last_seq < seq).values(last_seq=seq, updated_s=at_s)
        )
        if res.rowcount == 1:
            return True
        exists = conn.execute(select(t.c.issuer).where(t.c.issuer == issuer)).first()
        if exists is not None:
            return False
        conn.execute(insert(t).values(issuer=issuer, last_seq=seq, updated_s=at_s))
        return True

    @_storage_errors
    def advance_seq(self, issuer: str, seq: int, at_s: float) -> bool:
        try:
            with self.engine.begin() as conn:
                return self._advance(conn, issuer, seq, at_s)
        except IntegrityError:  # another writer inserted the issuer first: retry as an update
            with self.engine.begin() as conn:
                return self._advance(conn, issuer, seq, at_s)

    @_storage_errors
    def accept(self, rec: StoredCommand) -> bool:
        try:
            with self.engine.begin() as conn:
                if not self._advance(conn, rec.issuer, rec.seq, rec.received_s):
                    return False
                conn.execute(insert(commands_table).values(**_command_values(rec)))
                return True
        except IntegrityError:  # same command_id stored already, or a concurrent first insert of the issuer
            return False

    @_storage_errors
    def save_command(self, rec: StoredCommand) -> None:
        with self.engine.begin() as conn:
            self._save(conn, rec)

    @staticmethod
    def _save(conn: Connection, rec: StoredCommand) -> None:
        values = _command_values(rec)
        res = conn.execute(
            update(commands_table).where(commands_table.c.command_id == rec.command_id).values(**values)
        )
        if res.rowcount == 0:
            conn.execute(insert(commands_table).values(**values))

    @_storage_errors
    def write_batch(self, ops: Sequence[StoreOp]) -> list[bool]:
        """Several records in one transaction (one commit, one set of syncs), in order. Runs of the same
        kind go together: a run of accepts reads its ids and issuers' seqs once and inserts at once, a
        run of saves updates and inserts at once, a run of acks is one insert. Another writer getting
        in between makes the transaction fail; then it is done again record by record (in one
        transaction still). All or nothing: a record the database refuses fails the whole batch."""
        if not ops:
            return []
        try:
            with self.engine.begin() as conn:
                out: list[bool] = []
                for kind, run in groupby(ops, key=lambda op: op[0]):
                    values = [v for _k, v in run]
                    if kind == "accept":
                        out += self._accept_run(conn, values)  # type: ignore[arg-type]
                    elif kind == "save":
                        self._save_run(conn, values)  # type: ignore[arg-type]
                    elif kind == "ack":
                        self._ack_run(conn, values)  # type: ignore[arg-type]
                    else:
                        for value in values:
                            self._op(conn, kind, value)
                return out
        except (IntegrityError, _Conflict):  # another writer got in between (nothing was stored)
            with self.engine.begin() as conn:
                return [ok for kind, value in ops if (ok := self._op(conn, kind, value)) is not None]

    def _op(self, conn: Connection, kind: str, value: object) -> bool | None:
        """One record of a batch; an accept's result (else None)."""
        if kind == "accept":
            assert isinstance(value, StoredCommand)
            known = conn.execute(select(commands_table.c.command_id)
                                 .where(commands_table.c.command_id == value.command_id)).first()
            ok = known is None and self._advance(conn, value.issuer, value.seq, value.received_s)
            if ok:
                conn.execute(insert(commands_table).values(**_command_values(value)))
            return ok
        if kind == "save":
            assert isinstance(value, StoredCommand)
            self._save(conn, value)
        elif kind == "ack":
            assert isinstance(value, StoredAck)
            self._ack(conn, value)
        elif kind == "seq":
            issuer, seq, at_s = value  # type: ignore[misc]
            self._advance(conn, issuer, seq, at_s)
        else:
            raise ValueError(f"unknown dispatch store op {kind!r}")
        return None

    @staticmethod
    def _accept_run(conn: Connection, recs: list[StoredCommand]) -> list[bool]:
        """`accept` for each of `recs` in order: their ids and issuers' seqs read once, decided in order,
        the accepted commands inserted together and each issuer's seq moved once, only from the value
        read (a writer in between raises `_Conflict`)."""
        c, t = commands_table.c, issuer_seqs_table
        known: set[str] = set()
        for chunk in _chunks(list(dict.fromkeys(r.command_id for r in recs))):
            known.update(conn.execute(select(c.command_id).where(c.command_id.in_(chunk))).scalars())
        read: dict[str, int] = {}
        for chunk in _chunks(list(dict.fromkeys(r.issuer for r in recs))):
            q = select(t.c.issuer, t.c.last_seq).where(t.c.issuer.in_(chunk))
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            read.update((i, int(s)) for i, s in conn.execute(q).all())
        seqs: dict[str, int] = dict(read)
        out: list[bool] = []
        rows: list[dict[str, object]] = []
        for rec in recs:
            ok = rec.command_id not in known and (rec.issuer not in seqs or rec.seq > seqs[rec.issuer])
            if ok:
                known.add(rec.command_id)
                seqs[rec.issuer] = rec.seq
                rows.append(_command_values(rec))
            out.append(ok)
        at_s = max(r.received_s for r in recs)
        for issuer, seq in seqs.items():
            if issuer not in read:
                conn.execute(insert(t).values(issuer=issuer, last_seq=seq, updated_s=at_s))
            elif seq != read[issuer]:
                res = conn.execute(update(t).where(t.c.issuer == issuer, t.c.last_seq == read[issuer])
                                   .values(last_seq=seq, updated_s=at_s))
                if res.rowcount != 1:
                    raise _Conflict(issuer)
        if rows:
            conn.execute(insert(commands_table), rows)
        return out

    @staticmethod
    def _save_run(conn: Connection, recs: list[StoredCommand]) -> None:
        """`save_command` for each of `recs` (a command saved twice: as it was last)."""
        c = commands_table.c
        last = {rec.command_id: rec for rec in recs}
        known: set[str] = set()
        for chunk in _chunks(list(last)):
            known.update(conn.execute(select(c.command_id).where(c.command_id.in_(chunk))).scalars())
        updates = [{"b_id": cid, **_command_values(rec)} for cid, rec in last.items() if cid in known]
        inserts = [_command_values(rec) for cid, rec in last.items() if cid not in known]
        if updates:
            conn.execute(update(commands_table).where(c.command_id == bindparam("b_id")), updates)
        if inserts:
            conn.execute(insert(commands_table), inserts)

    @staticmethod
    def _ack_run(conn: Connection, acks: list[StoredAck]) -> None:
        conn.execute(insert(acks_table), [{"command_id": a.command_id, "status": a.status, "reason": a.reason,
                                           "at_s": a.at_s, "payload": a.payload} for a in acks])

    @_storage_errors
    def find_command(self, command_id: str) -> StoredCommand | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(commands_table).where(commands_table.c.command_id == command_id)).first()
        return None if row is None else _row_to_command(row)

    @_storage_errors
    def find_commands(self, command_ids: Sequence[str]) -> dict[str, StoredCommand]:
        out: dict[str, StoredCommand] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(command_ids))):
                for row in conn.execute(select(commands_table).where(commands_table.c.command_id.in_(chunk))):
                    rec = _row_to_command(row)
                    out[rec.command_id] = rec
        return out

    @_storage_errors
    def open_commands(self) -> list[StoredCommand]:
        t = commands_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(t.c.state.not_in(sorted(FINAL_STATES))).order_by(t.c.received_s, t.c.seq)
            ).all()
        return [_row_to_command(r) for r in rows]

    @_storage_errors
    def record_ack(self, ack: StoredAck) -> None:
        with self.engine.begin() as conn:
            self._ack(conn, ack)

    @staticmethod
    def _ack(conn: Connection, ack: StoredAck) -> None:
        conn.execute(insert(acks_table).values(
            command_id=ack.command_id, status=ack.status, reason=ack.reason, at_s=ack.at_s, payload=ack.payload,
        ))

    @_storage_errors
    def issuer_seqs(self) -> dict[str, int]:
        t = issuer_seqs_table
        with self.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(select(t.c.issuer, t.c.last_seq))}

    @_storage_errors
    def last_ack(self, command_id: str) -> StoredAck | None:
        t = acks_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.command_id == command_id).order_by(t.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        m = row._mapping
        return StoredAck(m["command_id"], m["status"], m["reason"], m["at_s"], m["payload"])

    def last_acks(self, command_ids: Sequence[str]) -> dict[str, StoredAck]:
        out: dict[str, StoredAck] = {}
        for cid in dict.fromkeys(command_ids):  # duplicates are rare: one indexed query each
            ack = self.last_ack(cid)
            if ack is not None:
                out[cid] = ack
        return out

    def close(self) -> None:
        self.engine.dispose()
