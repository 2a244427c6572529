"""The dispatch link and its storage under faults, through a real Mosquitto and a real database
(SQLite file and PostgreSQL): every message gets an ack, and nothing accepted is ever lost."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from tests.dispatch_builders import command
from tests.fixtures_db import PgSchema
from tests.fixtures_mqtt import GridClient, TcpGate
from tests.test_grid_mqtt import online, topic
from youxu.controller.store.dispatch_store import SqlDispatchStore, acks_table, commands_table, issuer_seqs_table
from youxu.controller.store.storage import Store


@dataclass
class Outage:
    """A database and a way to make it stop taking writes, and take them again."""

    url: str
    down: Callable[[], None]
    up: Callable[[], None]


def _chattr(flag: str, state: Path) -> None:
    for p in [*state.iterdir(), state]:
        subprocess.run(["chattr", flag, str(p)], check=True)


def _fill(mnt: Path) -> None:
    """Fill the volume to the last byte (ENOSPC)."""
    with open(mnt / "filler", "wb", buffering=0) as f:
        for size in (65536, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


@pytest.fixture(params=["sqlite-immutable", "sqlite-full", "postgresql"])
def outage(request: pytest.FixtureRequest, pg_available: str | None) -> Iterator[Outage]:
    """SQLite: the state directory on a 2 MB tmpfs, its files and itself made immutable (as `chattr +i`
    on a gateway), or the volume filled up. PostgreSQL: the server behind a TCP gate that closes
    (connections cut, refused)."""
    if request.param.startswith("sqlite"):
        mnt = request.getfixturevalue("tmpfs_volume")
        state = mnt / "state"
        url = f"sqlite:///{state / 'youxu.sqlite'}"
        if request.param == "sqlite-full":
            yield Outage(url, lambda: _fill(mnt), lambda: (mnt / "filler").unlink())
        else:
            yield Outage(url, lambda: _chattr("+i", state), lambda: _chattr("-i", state))
        return
    if pg_available:
        pytest.skip(pg_available)
    schema, gate = PgSchema(), TcpGate(5432)
    try:
        yield Outage(schema.url(port=gate.port), gate.close_gate, gate.open_gate)
    finally:
        gate.shutdown()
        gc.collect()
        schema.drop()


def db_rows(store: Store, table, **where: object) -> list:
    with store.engine.connect() as c:
        q = select(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return list(c.execute(q))


def import_limit_kw(link, t_s: float) -> float:
    return float(link.limits(np.array([t_s])).site_import_max_kw[0])


async def test_a_command_accepted_during_a_storage_outage_is_kept_written_and_survives_a_restart(
        make_link, grid: GridClient, outage: Outage):
    """The grid's 85 kW limit arrives while the database takes no writes: it is obeyed and acked
    (`received`, NOT_PERSISTED), its duplicate gets that ack again and a replay is refused; once the
    database is back the command, its acks and the issuer's seq are written, before anything newer;
    after a restart the 85 kW limit is in force, not the 90 kW one it superseded, and a replay is
    still refused."""
    store = Store(outage.url, flush_s=0.05)
    try:
        link = await make_link(store=SqlDispatchStore(store.engine), recorder=store)
        await online(grid, link)
        now = link.clock.now()
        first = command(now, import_max_kw=90.0, seq=10)
        grid.publish(topic(link, "dispatch"), first)
        await grid.until_ack(first["command_id"], "received")
        assert await until(lambda: db_rows(store, commands_table, command_id=first["command_id"]))

        outage.down()
        tighter = command(now, import_max_kw=85.0, seq=11)
        grid.publish(topic(link, "dispatch"), tighter)
        ack = await grid.until_ack(tighter["command_id"], "received")
        assert ack["reason"] == "NOT_PERSISTED"
        assert "not yet stored" in (await grid.until_event("dispatch_store_error"))["message"]
        assert import_limit_kw(link, now + 1) == 85.0  # obeyed all the same
        grid.publish(topic(link, "dispatch"), tighter)  # the grid did not see the ack: sends it again
        dup = await grid.until(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("duplicate"))
        assert dup[0].json()["command_id"] == tighter["command_id"] and dup[0].json()["status"] == "received"
        replay = command(now, import_max_kw=200.0, seq=11)
        grid.publish(topic(link, "dispatch"), replay)
        assert (await grid.until_ack(replay["command_id"], "rejected"))["reason"] == "OUT_OF_SEQUENCE"
        newer = command(now, import_max_kw=80.0, seq=12, issuer="other-dms")
        grid.publish(topic(link, "dispatch"), newer)
        await grid.until_ack(newer["command_id"], "received")

        outage.up()
        await grid.until_event("dispatch_store_restored", timeout_s=20.0)
        (row,) = db_rows(store, commands_table, command_id=tighter["command_id"])
        assert [r.state for r in db_rows(store, commands_table, command_id=first["command_id"])] == ["superseded"]
        acks = [r.status for r in db_rows(store, acks_table, command_id=tighter["command_id"])]
        assert acks[:1] == ["received"] and "rejected" not in acks
        assert [r.last_seq for r in db_rows(store, issuer_seqs_table, issuer="bj-dms")] == [11]
        # written in the order they happened: the older command's row before the newer one's
        (later,) = db_rows(store, commands_table, command_id=newer["command_id"])
        first_id = min(db_rows(store, acks_table, command_id=tighter["command_id"]), key=lambda r: r.id).id
        assert first_id < min(r.id for r in db_rows(store, acks_table, command_id=newer["command_id"]))
        assert row.seq == 11 and later.seq == 12

        await link.stop()
        again = await make_link(link.site_id, clock=link.clock, store=SqlDispatchStore(store.engine))
        await online(grid, again)
        assert import_limit_kw(again, now + 1) == 80.0 and tighter["command_id"] in again.book.open
        assert first["command_id"] not in again.book.open
        n_dup = len(grid.seen(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("duplicate")))
        grid.publish(topic(again, "dispatch"), tighter)
        await grid.until(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("duplicate"), count=n_dup + 1)
        replay2 = command(now, import_max_kw=200.0, seq=11)
        grid.publish(topic(again, "dispatch"), replay2)
        assert (await grid.until_ack(replay2["command_id"], "rejected"))["reason"] == "OUT_OF_SEQUENCE"
    finally:
        store.close()


async def test_a_flood_during_a_storage_outage_is_answered_from_memory_and_written_once_back(
        make_link, grid: GridClient, outage: Outage):
    """Commands and copies of them published back to back while the database takes no writes (the
    link takes them in batches): each command is received once with NOT_PERSISTED, each copy gets its
    command's ack marked duplicate, a replay of the last seq is refused; once the database is back,
    every command, its acks and the issuer's last seq are written."""
    store = Store(outage.url, flush_s=0.05)
    try:
        link = await make_link(store=SqlDispatchStore(store.engine), recorder=store)
        await online(grid, link)
        now = link.clock.now()
        warm = command(now, seq=1, issuer="flood-dms")
        grid.publish(topic(link, "dispatch"), warm)
        await grid.until_ack(warm["command_id"], "received")
        assert await until(lambda: db_rows(store, commands_table, command_id=warm["command_id"]))

        outage.down()
        cmds = [command(now, import_max_kw=300.0 + i, seq=10 + i, issuer="flood-dms") for i in range(40)]
        for c in cmds:
            for _copy in range(2):
                grid.publish(topic(link, "dispatch"), c)
        is_ack = lambda m: m.topic.endswith("/dispatch/ack")  # noqa: E731
        await grid.until(lambda m: is_ack(m) and m.json().get("duplicate"), timeout_s=20.0, count=len(cmds))
        for c in cmds:
            mine = grid.acks(c["command_id"])
            received = [a for a in mine if a["status"] == "received" and not a.get("duplicate")]
            assert [a["reason"] for a in received] == ["NOT_PERSISTED"], mine
            dup = [a for a in mine if a.get("duplicate")]
            assert len(dup) == 1 and dup[0]["status"] in ("received", "superseded"), mine
        replay = command(now, import_max_kw=500.0, seq=10 + len(cmds) - 1, issuer="flood-dms")
        grid.publish(topic(link, "dispatch"), replay)
        assert (await grid.until_ack(replay["command_id"], "rejected"))["reason"] == "OUT_OF_SEQUENCE"
        assert import_limit_kw(link, now + 1) == 300.0 + len(cmds) - 1

        outage.up()
        await grid.until_event("dispatch_store_restored", timeout_s=30.0)
        assert await until(lambda: len(db_rows(store, commands_table, issuer="flood-dms")) == len(cmds) + 1, 20.0)
        assert [r.last_seq for r in db_rows(store, issuer_seqs_table, issuer="flood-dms")] == [10 + len(cmds) - 1]
        for c in cmds:
            assert "received" in [r.status for r in db_rows(store, acks_table, command_id=c["command_id"])]
        assert not db_rows(store, commands_table, command_id=replay["command_id"])
    finally:
        store.close()


async def until(pred: Callable[[], object], timeout_s: float = 5.0) -> object:
    deadline = time.monotonic() + timeout_s
    while not (got := pred()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return got


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


async def test_database_unreachable_at_start_the_link_runs_and_restores_the_commands_later(
        make_link, grid: GridClient, pg_schema: PgSchema):
    """PostgreSQL behind a closed gate when the daemon starts: the grid link starts all the same and
    obeys what the grid sends; once the database answers, the commands in force before the restart
    join the book and what was accepted meanwhile is written."""
    gate = TcpGate(5432)
    url = pg_schema.url(port=gate.port)
    try:
        store = Store(url, flush_s=0.05)
        try:
            link = await make_link(store=SqlDispatchStore(store.engine), recorder=store)
            await online(grid, link)
            now = link.clock.now()
            before = command(now, import_max_kw=90.0, seq=10, minutes=120)
            grid.publish(topic(link, "dispatch"), before)
            await grid.until_ack(before["command_id"], "received")
            assert await until(lambda: db_rows(store, commands_table, command_id=before["command_id"]))
            await link.stop()
        finally:
            store.close()
        gate.close_gate()
        store = Store(url, flush_s=0.05)
        try:
            again = await make_link(link.site_id, clock=link.clock, store=SqlDispatchStore(store.engine),
                                    recorder=store)
            await online(grid, again)
            assert "not restored at start" in (await grid.until_event("dispatch_store_error"))["message"]
            meanwhile = command(now, import_max_kw=120.0, seq=5, issuer="other-dms", minutes=120)
            grid.publish(topic(again, "dispatch"), meanwhile)
            ack = await grid.until_ack(meanwhile["command_id"], "received")
            assert ack["reason"] == "NOT_PERSISTED" and import_limit_kw(again, now + 1) == 120.0
            gate.open_gate()
            again.clock.advance(6.0)  # the link asks again every 5 s of its clock
            restored = await grid.until_event("dispatch_store_restored", timeout_s=20.0)
            assert before["command_id"] in restored.get("restored", []) or before["command_id"] in again.book.open
            await until(lambda: before["command_id"] in again.book.open)
            assert import_limit_kw(again, now + 7) == 90.0
            assert await until(lambda: db_rows(store, commands_table, command_id=meanwhile["command_id"]), 20.0)
            assert [r.last_seq for r in db_rows(store, issuer_seqs_table, issuer="other-dms")] == [5]
        finally:
            store.close()
    finally:
        gate.shutdown()
        gc.collect()
