"""The dispatch link and its storage under faults, through a real Mosquitto and a real database
(SQLite file and PostgreSQL): every message gets an ack, and nothing accepted is ever lost."""

from __future__ import annotations

import asyncio
import json
import time

from sqlalchemy import func, select

from tests.dispatch_builders import command
from tests.fixtures_mqtt import GridClient
from tests.test_grid_mqtt import online, topic
from youxu.controller.store.dispatch_store import SqlDispatchStore, acks_table
from youxu.controller.store.storage import Store


async def stored_acks(store: Store, want: int, timeout_s: float = 5.0) -> int:
    """Rows in dispatch_acks once there are `want` (they are written off the message path)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with store.engine.connect() as c:
            n = int(c.execute(select(func.count()).select_from(acks_table)).scalar_one())
        if n >= want or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.05)


async def test_ids_a_database_or_utf8_cannot_take_get_a_bad_schema_ack(make_link, grid: GridClient, db_url: str):
    """A lone surrogate cannot be encoded as UTF-8 (the ack publisher failed), a NUL cannot be stored
    in PostgreSQL text (the store failed): each such message is rejected with the field, its ack
    published and stored."""
    store = Store(db_url)
    try:
        link = await make_link(store=SqlDispatchStore(store.engine), recorder=store)
        await online(grid, link)
        now = link.clock.now()
        cases = [({"command_id": "\udfff"}, "command_id", None),
                 ({"command_id": "a\u0000b"}, "command_id", None),
                 ({"command_id": "ok-1", "issuer": "bj\u0000dms"}, "issuer", "ok-1"),
                 ({"command_id": "ok-2", "issuer": "bj\ud800"}, "issuer", "ok-2"),
                 ({"command_id": "ok-3", "target": "\udfff"}, "target", "ok-3"),
                 ({"command_id": "ok-4", "kind": "cancel", "cancels": "x\u0000"}, "cancels", "ok-4")]
        for extra, _, _ in cases:
            kind = extra.pop("kind", "limit")
            grid.publish(topic(link, "dispatch"), json.dumps(command(now, kind=kind, **extra)).encode())
        acks = await grid.until(lambda m: m.topic.endswith("/dispatch/ack"), count=len(cases))
        got = [(a["status"], a["reason"], a["field"], a["command_id"]) for a in (m.json() for m in acks)]
        assert got == [("rejected", "BAD_SCHEMA", f, cid) for _, f, cid in cases]
        assert await stored_acks(store, len(cases)) == len(cases)
    finally:
        store.close()
