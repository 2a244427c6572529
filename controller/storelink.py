"""Where the rooms meet storage: what the fast loop, the grid link and the ops side ask of it.

`store/` implements these (`store.storage.Store`, `store.dispatch_store`); the loop, the grid link
and the metrics see only the protocols and records here, so a database is never a seam's type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from youxu.controller.gridlink import TickReport


class SessionRecord(Protocol):
    """A charging session as it is stored (the loop's sessions are these)."""

    id: str
    pile_id: str
    arrival_s: float
    departure_s: float
    energy_requested_kwh: float
    delivered_kwh: float
    v2g: bool
    urgent: bool
    booked: bool
    state: str


class EventRecorder(Protocol):
    def event(self, t_s: float, kind: str, message: str, fields: dict | None = None) -> None:
        """Queue an alarm or state change for the events table (never blocks)."""
        ...


class StoreHealth(Protocol):
    """The store's counters, cheap to read from any thread."""

    db_ok: bool
    last_error: str
    dropped_bulk: int
    dropped_keep: int
    written: int
    write_failures: int
    replaced: int  # times the database file was found deleted or replaced under the store, and opened afresh
    replaced_error: str

    @property
    def dropped(self) -> int: ...

    @property
    def depth(self) -> int: ...

    def depths(self) -> dict[str, int]: ...


class Recorder(EventRecorder, StoreHealth, Protocol):
    """The store as the fast loop sees it: everything queued, nothing waits on the database."""

    def tick(self, r: TickReport, finished: list | None = None, base_phase_kw: Sequence[float] | None = None,
             meter_ok: bool = True) -> None: ...

    def loop_stats(self, row: dict) -> None: ...

    def save_state(self, key: str, value: dict, t_s: float) -> None: ...

    def sessions_open(self, open_sessions: list, t_s: float) -> None: ...


# ---- the dispatch link's memory -----------------------------------------------------------------
FINAL_STATES = frozenset({"completed", "expired", "superseded", "cancelled"})


@dataclass(frozen=True)
class StoredCommand:
    """A command the site accepted, as persisted (payload is the JSON received)."""

    command_id: str
    issuer: str
    seq: int
    role: str  # "dispatch" | "default"
    state: str  # received | active | completed | expired | superseded | cancelled
    payload: str
    received_s: float
    end_s: float | None = None  # effective end (valid_until, or when superseded/cancelled); None = open
    applied_s: float | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    updated_s: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class StoredAck:
    command_id: str | None
    status: str
    reason: str | None
    at_s: float
    payload: str  # the JSON published


class StorageError(Exception):
    """A dispatch store could not do what was asked."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or written now (down, full, read-only, its file gone): try later."""


class StorageRefused(StorageError):
    """The database refuses this record (it would refuse it again)."""


StoreOp = (tuple[Literal["accept", "save"], StoredCommand] | tuple[Literal["ack"], StoredAck]
           | tuple[Literal["seq"], tuple[str, int, float]])
"""One record of a `DispatchStore.write_batch`."""


class SeqStore(Protocol):
    def last_seq(self, issuer: str) -> int | None: ...

    def issuer_seqs(self) -> dict[str, int]:
        """Every issuer's last seq."""
        ...

    def advance_seq(self, issuer: str, seq: int, at_s: float) -> bool:
        """Record `seq` for `issuer` if it is above the last one; False (and no change) otherwise."""
        ...


class CommandStore(Protocol):
    def save_command(self, rec: StoredCommand) -> None:
        """Insert or update by command_id."""
        ...

    def find_command(self, command_id: str) -> StoredCommand | None: ...

    def open_commands(self) -> list[StoredCommand]:
        """Commands not in a final state (including the current default), oldest first."""
        ...

    def record_ack(self, ack: StoredAck) -> None: ...

    def last_ack(self, command_id: str) -> StoredAck | None: ...


class DispatchStore(SeqStore, CommandStore, Protocol):
    """Any method may raise `StorageUnavailable` or `StorageRefused` (never another database error)."""

    def accept(self, rec: StoredCommand) -> bool:
        """Atomically: advance the issuer's seq to `rec.seq` and save `rec`; False if seq is not above."""
        ...

    def find_commands(self, command_ids: Sequence[str]) -> dict[str, StoredCommand]:
        """The stored commands among `command_ids`, by id (one round trip for a batch)."""
        ...

    def last_acks(self, command_ids: Sequence[str]) -> dict[str, StoredAck]:
        """The last ack stored for each of `command_ids` that has one."""
        ...

    def write_batch(self, ops: Sequence[StoreOp]) -> list[bool]:
        """The records of `ops` in ONE transaction (one commit), in order, each as its own method would
        write it: ("accept", StoredCommand) as `accept` (a later one sees the seqs and ids the earlier
        ones stored), ("save", StoredCommand) as `save_command`, ("ack", StoredAck) as `record_ack`,
        ("seq", (issuer, seq, at_s)) as `advance_seq`; returns each accept's result, in order. All or
        nothing: if it raises, nothing of the batch was stored."""
        ...

    @property
    def generation(self) -> int:
        """Changes when the database was found replaced (its file deleted, say) and opened afresh, empty:
        whoever holds records in memory writes them again."""
        ...

    def close(self) -> None: ...


def with_state(rec: StoredCommand, state: str, now_s: float, **changes: Any) -> StoredCommand:
    return replace(rec, state=state, updated_s=now_s, **changes)
