"""Persistence off the hot path: the loop enqueues, a writer thread batches into SQL.

SQLite by default (WAL, one file in the state directory), PostgreSQL by URL. The queue is
bounded: when the database is slow or down, readings are dropped oldest-first and counted;
commands, acks, events and sessions are never the ones dropped.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from controller.gridlink import TickReport
from controller.sessions import Session

log = logging.getLogger(__name__)

metadata = MetaData()

readings = Table(
    "readings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t_s", Float, nullable=False, index=True),
    Column("total_kw", Float), Column("base_kw", Float), Column("ev_kw", Float),
    Column("l1_kw", Float), Column("l2_kw", Float), Column("l3_kw", Float),
    Column("limit_kw", Float), Column("tick_ms", Float),
)
setpoints = Table(
    "setpoints", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t_s", Float, nullable=False, index=True),
    Column("pile_id", String(64), nullable=False),
    Column("kw", Float), Column("measured_kw", Float), Column("status", String(16)),
)
sessions = Table(
    "sessions", metadata,
    Column("id", String(96), primary_key=True),
    Column("pile_id", String(64), nullable=False),
    Column("arrival_s", Float), Column("departure_s", Float), Column("ended_s", Float),
    Column("energy_requested_kwh", Float), Column("energy_delivered_kwh", Float),
    Column("v2g", Integer), Column("urgent", Integer), Column("booked", Integer),
)
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("t_s", Float, nullable=False, index=True),
    Column("kind", String(48), nullable=False),
    Column("message", String(512)),
    Column("fields", JSON),
)
state = Table(
    "state", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON),
    Column("t_s", Float),
)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True, future=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn, _rec) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return engine


class Store:
    """Queue in front of the database; `tick`/`event` never block the caller."""

    def __init__(self, url: str, queue_size: int = 10000, flush_s: float = 1.0, pile_rows_every: int = 1) -> None:
        self.url = url
        self.engine = make_engine(url)
        metadata.create_all(self.engine)
        self.flush_s = flush_s
        self.pile_rows_every = max(1, pile_rows_every)
        self._bulk: deque[tuple[Table, dict]] = deque()  # droppable (readings, setpoints)
        self._vital: queue.Queue[tuple[Table, dict, bool]] = queue.Queue()  # never dropped
        self.queue_size = queue_size
        self.dropped = 0
        self.written = 0
        self.db_ok = True
        self._ticks = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="youxu-store", daemon=True)
        self._thread.start()

    # ---- producers (hot path) ------------------------------------------------------------
    def _bulk_put(self, table: Table, row: dict) -> None:
        with self._lock:
            if len(self._bulk) >= self.queue_size:
                self._bulk.popleft()
                self.dropped += 1
            self._bulk.append((table, row))

    def tick(self, r: TickReport, finished: list[Session] | None = None) -> None:
        ph = r.phase_kw or (None, None, None)
        self._bulk_put(readings, {"t_s": r.t_s, "total_kw": r.total_kw, "base_kw": r.base_kw, "ev_kw": r.ev_kw,
                                  "l1_kw": ph[0], "l2_kw": ph[1], "l3_kw": ph[2], "limit_kw": r.limit_kw,
                                  "tick_ms": r.tick_ms})
        self._ticks += 1
        if self._ticks % self.pile_rows_every == 0:
            for pid, kw in r.setpoints_kw.items():
                if kw or r.pile_power_kw.get(pid):
                    self._bulk_put(setpoints, {"t_s": r.t_s, "pile_id": pid, "kw": kw,
                                               "measured_kw": r.pile_power_kw.get(pid),
                                               "status": r.pile_status.get(pid)})
        for s in finished or []:
            self.session_closed(s, r.t_s)

    def session_closed(self, s: Session, t_s: float) -> None:
        self._vital.put((sessions, {"id": s.id, "pile_id": s.pile_id, "arrival_s": s.arrival_s,
                                    "departure_s": s.departure_s, "ended_s": t_s,
                                    "energy_requested_kwh": s.energy_requested_kwh,
                                    "energy_delivered_kwh": s.delivered_kwh, "v2g": int(s.v2g),
                                    "urgent": int(s.urgent), "booked": int(s.booked)}, False))

    def event(self, t_s: float, kind: str, message: str, fields: dict | None = None) -> None:
        self._vital.put((events, {"t_s": t_s, "kind": kind, "message": message[:512],
                                  "fields": json.loads(json.dumps(fields or {}, default=str))}, False))

    def save_state(self, key: str, value: dict, t_s: float) -> None:
        self._vital.put((state, {"key": key, "value": value, "t_s": t_s}, True))

    def load_state(self, key: str) -> dict | None:
        try:
            with self.engine.connect() as c:
                row = c.execute(select(state.c.value).where(state.c.key == key)).first()
        except SQLAlchemyError:
            return None
        return None if row is None else row[0]

    # ---- the writer thread -----------------------------------------------------------------
    def _take_batch(self) -> tuple[list[tuple[Table, dict, bool]], list[tuple[Table, dict]]]:
        vital: list[tuple[Table, dict, bool]] = []
        while True:
            try:
                vital.append(self._vital.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            bulk = list(self._bulk)
            self._bulk.clear()
        return vital, bulk

    def _write(self, vital: list[tuple[Table, dict, bool]], bulk: list[tuple[Table, dict]]) -> None:
        by_table: dict[Table, list[dict]] = {}
        with self.engine.begin() as conn:
            for table, row, upsert in vital:
                if upsert or table is sessions:
                    key_col = table.c.key if table is state else table.c.id
                    key = row["key"] if table is state else row["id"]
                    conn.execute(table.delete().where(key_col == key))
                conn.execute(insert(table), [row])
            for table, row in bulk:
                by_table.setdefault(table, []).append(row)
            for table, rows in by_table.items():
                conn.execute(insert(table), rows)
        self.written += len(vital) + len(bulk)

    def _run(self) -> None:
        pending_vital: list[tuple[Table, dict, bool]] = []
        while True:
            stopping = self._stop.wait(self.flush_s)
            vital, bulk = self._take_batch()
            pending_vital.extend(vital)
            if pending_vital or bulk:
                try:
                    self._write(pending_vital, bulk)
                    pending_vital = []
                    if not self.db_ok:
                        log.warning("database reachable again")
                    self.db_ok = True
                except SQLAlchemyError as exc:
                    if self.db_ok:
                        log.error("database write failed, buffering: %s", exc)
                    self.db_ok = False
                    with self._lock:  # put the readings back (bounded), keep the vital rows
                        for item in reversed(bulk):
                            if len(self._bulk) >= self.queue_size:
                                self.dropped += 1
                                continue
                            self._bulk.appendleft(item)
                    if stopping:
                        return
                    time.sleep(min(self.flush_s, 1.0))
                    continue
            if stopping:
                return

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self.engine.dispose()

    @property
    def depth(self) -> int:
        return len(self._bulk) + self._vital.qsize()
