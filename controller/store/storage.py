"""Persistence off the hot path: the loop enqueues, a writer thread batches into SQL.

SQLite by default (WAL, one file in the state directory), PostgreSQL by URL; the schema is
brought up to date with alembic when the store opens (and retried by the writer while the
database is unreachable). Three classes of rows, each in its own queue:

- vital (sessions, events, saved state): never dropped, kept until the database takes them;
- keep (1-min and 15-min readings, loop statistics): bounded, dropped oldest-first only when full;
- bulk (raw readings at the tick rate, setpoints): bounded, dropped oldest-first when full.

Producers (`tick`, `event`, ...) only append under a lock: a slow or failing database never
delays a tick. Drops are counted (`dropped_bulk`, `dropped_keep`); `db_ok` and `last_error`
tell the loop when to raise an alarm. Old rows are pruned by retention window.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from youxu.controller.gridlink import TickReport
from youxu.controller.siteconfig import StorageSection
from youxu.controller.store import database
from youxu.controller.store.downsample import Bucket
from youxu.controller.store.event_log import EventRow, RecentEvents
from youxu.controller.store.schema import (
    RETAINED,
    events,
    loop_stats,
    readings,
    readings_1m,
    readings_15m,
    sessions,
    setpoints,
    state,
)
from youxu.controller.store.values import finite, is_outage, plain_json, session_row
from youxu.controller.storelink import SessionRecord

log = logging.getLogger(__name__)

RETRY_MAX_S = 10.0  # longest wait between attempts while the database is down
PRUNE_EVERY_S = 600.0  # data time between retention passes
MAX_BATCH_ROWS = 500  # a backlog is written in batches this size, with pauses for the control loop
BACKLOG_PAUSE_S = 0.02
KEYS = {state: "key", sessions: "id"}  # upserted tables and their key column
PILE_ROW_S = 60.0  # an unchanged pile gets a setpoints row this often
PILE_ROW_DELTA_KW = 0.3  # ...and at once when its setpoint or power moves by more


@dataclass(frozen=True)
class Retention:
    raw_s: float = 7 * 86400
    minute_s: float = 400 * 86400
    quarter_s: float = 10 * 365 * 86400

    def window_s(self, kind: str) -> float:
        return {"raw": self.raw_s, "minute": self.minute_s, "quarter": self.quarter_s}[kind]


@dataclass
class History:
    """Household load read back from storage (a forecast's warm start), in time order."""

    t_s: np.ndarray
    base_kw: np.ndarray
    base_phase_kw: np.ndarray  # (n, 3)


class Store:
    """Queues in front of the database; producers never block."""

    def __init__(self, url: str, queue_size: int = 10000, flush_s: float = 1.0, pile_rows_every: int = 1,
                 retention: Retention | None = None, migrate: bool = True) -> None:
        self.url = url
        self.engine = database.make_engine(url)
        self.flush_s = flush_s
        self.pile_rows_every = max(1, pile_rows_every)
        self.retention = retention or Retention()
        self.queue_size = queue_size
        self._bulk: deque[tuple[Table, dict]] = deque()
        self._keep: deque[tuple[Table, dict]] = deque()
        self._vital: deque[tuple[Table, dict]] = deque()
        self.dropped_bulk = 0
        self.dropped_keep = 0
        self.written = 0
        self.write_failures = 0
        self.rejected = 0  # rows the database refused (bad data), dropped
        self.db_ok = True
        self.last_error = ""
        self.replaced = 0  # times the database file was found deleted or replaced, and opened afresh
        self.replaced_error = ""
        self._file_generation = 0
        self.migrated = False
        self.latest_t_s = -math.inf
        self._pruned_at_s = -math.inf
        self._ticks = 0
        self._pile_last: dict[str, tuple[float, float, str | None, float]] = {}  # t_s, kw, status, measured
        self._minute = Bucket(60.0)
        self._quarter = Bucket(900.0)
        self.recent_events = RecentEvents()  # the latest events, readable at once (and without the database)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Event()
        if migrate:
            self._try_migrate()
        self._thread = threading.Thread(target=self._run, name="youxu-store", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, section: StorageSection) -> Store:
        s = section
        return cls(s.database_url(), s.queue_size, s.flush_s,
                   retention=Retention(s.raw_retention_s, s.minute_retention_s, s.quarter_retention_s))

    @property
    def dropped(self) -> int:
        return self.dropped_bulk + self.dropped_keep

    @property
    def depth(self) -> int:
        return len(self._bulk) + len(self._keep) + len(self._vital)

    def depths(self) -> dict[str, int]:
        return {"bulk": len(self._bulk), "keep": len(self._keep), "vital": len(self._vital)}

    # ---- producers (hot path) ------------------------------------------------------------
    def _put(self, q: deque, table: Table, row: dict, bounded: bool) -> None:
        with self._lock:
            if bounded and len(q) >= self.queue_size:
                q.popleft()
                if q is self._bulk:
                    self.dropped_bulk += 1
                else:
                    self.dropped_keep += 1
            q.append((table, row))
        self._idle.clear()

    def tick(self, r: TickReport, finished: list[SessionRecord] | None = None,
             base_phase_kw: Sequence[float] | None = None, meter_ok: bool = True) -> None:
        ph = r.phase_kw or (None, None, None)
        bp = (None, None, None) if base_phase_kw is None else tuple(float(x) for x in base_phase_kw)
        values = (r.total_kw, r.base_kw, r.ev_kw, ph[0], ph[1], ph[2], bp[0], bp[1], bp[2])
        row = {"t_s": r.t_s, "limit_kw": finite(r.limit_kw), "tick_ms": r.tick_ms, "meter_ok": int(meter_ok)}
        row.update(zip(("total_kw", "base_kw", "ev_kw", "l1_kw", "l2_kw", "l3_kw", "base_l1_kw", "base_l2_kw",
                        "base_l3_kw"), (finite(v) for v in values), strict=True))
        self._put(self._bulk, readings, row, True)
        self.latest_t_s = max(self.latest_t_s, r.t_s)
        for bucket, table in ((self._minute, readings_1m), (self._quarter, readings_15m)):
            closed = bucket.add(r.t_s, values, r.limit_kw)
            if closed is not None:
                self._put(self._keep, table, closed, True)
        self._ticks += 1
        if self._ticks % self.pile_rows_every == 0:
            self._pile_rows(r)
        for s in finished or []:
            self.session_closed(s, r.t_s)

    def _pile_rows(self, r: TickReport) -> None:
        """A pile's row when its setpoint, status or power changed, else once every PILE_ROW_S (flash wear)."""
        for pid, kw in r.setpoints_kw.items():
            measured = r.pile_power_kw.get(pid) or 0.0
            status = r.pile_status.get(pid)
            last = self._pile_last.get(pid)
            if last is not None and not (
                    status != last[2] or abs(kw - last[1]) > PILE_ROW_DELTA_KW
                    or abs(measured - last[3]) > PILE_ROW_DELTA_KW
                    or not 0.0 <= r.t_s - last[0] < PILE_ROW_S):
                continue
            self._pile_last[pid] = (r.t_s, kw, status, measured)
            if kw or measured or last is None or status != last[2]:
                self._put(self._bulk, setpoints, {"t_s": r.t_s, "pile_id": pid, "kw": kw, "measured_kw": measured,
                                                  "status": status}, True)

    def session_closed(self, s: SessionRecord, t_s: float) -> None:
        self._put(self._vital, sessions, session_row(s, t_s, ended=True), False)

    def sessions_open(self, open_sessions: list[SessionRecord], t_s: float) -> None:
        """The open sessions as they stand (requested and delivered energy so far)."""
        for s in open_sessions:
            self._put(self._vital, sessions, session_row(s, t_s, ended=False), False)

    def event(self, t_s: float, kind: str, message: str, fields: dict | None = None) -> None:
        clean = plain_json(fields or {})
        self.recent_events.add(EventRow(t_s, kind, message, clean if isinstance(clean, dict) else {}))
        self._put(self._vital, events, {"t_s": t_s, "kind": kind, "message": message[:512], "fields": clean}, False)

    def save_state(self, key: str, value: dict, t_s: float) -> None:
        self._put(self._vital, state, {"key": key, "value": plain_json(value), "t_s": t_s}, False)

    def loop_stats(self, row: dict) -> None:
        self._put(self._keep, loop_stats, row, True)

    # ---- reading back (at start, before the loop runs) -------------------------------------
    def load_state(self, key: str) -> dict | None:
        try:
            with self.engine.connect() as c:
                row = c.execute(select(state.c.value).where(state.c.key == key)).first()
        except SQLAlchemyError as exc:
            log.error("cannot read saved state %r: %s", key, exc)
            return None
        return None if row is None else row[0]

    def history(self, since_s: float, raw_only: bool = False, limit: int = 200_000) -> History:
        """Household load since `since_s`: 1-min averages, then the raw readings after the last of them
        (`raw_only`: every raw reading, for the peaks of the last hour)."""
        cols = ("t_s", "base_kw", "base_l1_kw", "base_l2_kw", "base_l3_kw")
        rows: list = []
        try:
            with self.engine.connect() as c:
                after = since_s
                if not raw_only:
                    t = readings_1m
                    rows = list(c.execute(select(*(t.c[k] for k in cols)).where(t.c.t_s >= since_s)
                                          .order_by(t.c.t_s).limit(limit)))
                    after = rows[-1][0] + 60.0 if rows else since_s
                t = readings
                rows += list(c.execute(select(*(t.c[k] for k in cols)).where(t.c.t_s >= after)
                                       .order_by(t.c.t_s).limit(limit)))
        except SQLAlchemyError as exc:
            log.error("cannot read the load history: %s", exc)
        rows = [r for r in rows if r[1] is not None]
        t_s = np.array([r[0] for r in rows], dtype=float)
        base = np.array([r[1] for r in rows], dtype=float)
        phase = np.array([[r[2], r[3], r[4]] if None not in r[2:5] else [r[1] / 3.0] * 3 for r in rows],
                         dtype=float).reshape(-1, 3)
        return History(t_s, base, phase)

    # ---- the writer thread -----------------------------------------------------------------
    def _try_migrate(self) -> bool:
        try:
            database.upgrade(self.engine)
        except Exception as exc:  # unreachable, or a schema this version does not know: control goes on
            self._failed(exc, "schema upgrade")
            return False
        self.migrated = True
        return True

    def _failed(self, exc: Exception, what: str) -> None:
        msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if self.db_ok:
            log.error("database %s failed, buffering: %s", what, msg)
        self.db_ok = False
        self.last_error = msg
        self.write_failures += 1

    def _take(self) -> tuple[list, list, list]:
        """The next batch: every vital row, then up to MAX_BATCH_ROWS of the others (oldest first)."""
        with self._lock:
            vital = list(self._vital)
            self._vital.clear()
            room = max(0, MAX_BATCH_ROWS - len(vital))
            keep = [self._keep.popleft() for _ in range(min(room, len(self._keep)))]
            room -= len(keep)
            bulk = [self._bulk.popleft() for _ in range(min(room, len(self._bulk)))]
        return vital, keep, bulk

    def _put_back(self, vital: list, keep: list, bulk: list) -> None:
        """A failed batch goes back in front of what arrived meanwhile (bounded queues stay bounded)."""
        with self._lock:
            self._vital.extendleft(reversed(vital))
            for q, rows in ((self._keep, keep), (self._bulk, bulk)):
                room = max(0, self.queue_size - len(q))
                lost = max(0, len(rows) - room)
                q.extendleft(reversed(rows[lost:]))
                if q is self._bulk:
                    self.dropped_bulk += lost
                else:
                    self.dropped_keep += lost

    def _write(self, vital: list, keep: list, bulk: list) -> None:
        by_table: dict[Table, list[dict]] = {}
        with self.engine.begin() as conn:
            for table, row in vital:
                key = KEYS.get(table)
                if key is not None:
                    conn.execute(delete(table).where(table.c[key] == row[key]))
                conn.execute(insert(table), [row])
            for table, row in keep + bulk:
                by_table.setdefault(table, []).append(row)
            for table, rows in by_table.items():
                conn.execute(insert(table), rows)
        self.written += len(vital) + len(keep) + len(bulk)

    def _write_each(self, vital: list, keep: list, bulk: list) -> bool:
        """Row by row after the database refused a batch: refused rows are dropped (counted)."""
        queues = [vital, keep, bulk]
        for qi, rows in enumerate(queues):
            for i, item in enumerate(rows):
                try:
                    self._write(*[[item] if j == qi else [] for j in range(3)])
                except SQLAlchemyError as exc:
                    if is_outage(exc):
                        rest = [q if j > qi else [] for j, q in enumerate(queues)]
                        rest[qi] = rows[i:]
                        self._put_back(*rest)
                        self._failed(exc, "write")
                        return False
                    self.rejected += 1
                    log.error("row for %s refused by the database, dropped: %s", item[0].name,
                              str(exc).splitlines()[0][:200])
        return True

    def _prune(self) -> None:
        if not math.isfinite(self.latest_t_s) or self.latest_t_s - self._pruned_at_s < PRUNE_EVERY_S:
            return
        self._pruned_at_s = self.latest_t_s
        with self.engine.begin() as conn:
            for table, kind in RETAINED:
                conn.execute(delete(table).where(table.c.t_s < self.latest_t_s - self.retention.window_s(kind)))

    def _check_file(self) -> bool:
        """Never write into a deleted file: a SQLite file no longer at its path is opened afresh there."""
        try:
            database.ensure_file(self.engine)
        except SQLAlchemyError as exc:
            self._failed(exc, "reopen")
            return False
        watched = database.sqlite_file(self.engine)
        if watched is not None and watched.generation != self._file_generation:
            self._file_generation = watched.generation
            self.replaced += 1
            self.replaced_error = watched.replaced_because
            log.error("%s: opened afresh; what it held is lost unless restored from a backup", self.replaced_error)
        return True

    def _cycle(self) -> bool:
        """One attempt: migrate if needed, write what is queued, prune. True when the database took it."""
        if not self.migrated and not self._try_migrate():
            return False
        if not self._check_file():
            return False
        vital, keep, bulk = self._take()
        if not (vital or keep or bulk):
            return True
        try:
            self._write(vital, keep, bulk)
            self._prune()
        except SQLAlchemyError as exc:
            if not is_outage(exc):  # a row the database refuses must not hold up the others
                log.error("database refused a batch (%s); writing its rows one by one",
                          str(exc).splitlines()[0][:200])
                return self._write_each(vital, keep, bulk)
            self._put_back(vital, keep, bulk)
            self._failed(exc, "write")
            return False
        if not self.db_ok:
            log.warning("database reachable again; %d rows written", self.written)
        self.db_ok, self.last_error = True, ""
        return True

    def _run(self) -> None:
        wait_s = self.flush_s
        while True:
            self._wake.wait(wait_s)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                ok = self._cycle()
            except Exception as exc:  # the writer must outlive anything the database throws
                log.exception("store writer failed")
                self._failed(exc, "write")
                ok = False
            wait_s = self.flush_s if ok else min(RETRY_MAX_S, max(self.flush_s, wait_s * 2))
            if ok and self.depth == 0:
                self._idle.set()
            elif ok:
                wait_s = BACKLOG_PAUSE_S  # catching up after an outage: the next batch soon
            if stopping and (not ok or self.depth == 0):
                return

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Ask the writer to write now and wait until the queues are empty (tests, backups)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._idle.clear()
            self._wake.set()
            if self._idle.wait(min(0.5, max(0.0, deadline - time.monotonic()))) and self.depth == 0:
                return True
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the open buckets, write what is queued (as far as the database allows), stop."""
        for bucket, table in ((self._minute, readings_1m), (self._quarter, readings_15m)):
            row = bucket.close()
            if row is not None:
                self._put(self._keep, table, row, True)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self.depth:
            log.error("%d rows not written at shutdown (database unavailable: %s)", self.depth, self.last_error)
        self.engine.dispose()
