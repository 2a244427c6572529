"""The dispatch store protocol on memory, SQLite and PostgreSQL (127.0.0.1:5432, database `test`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from youxu.controller.store.dispatch_store import MemoryDispatchStore, SqlDispatchStore
from youxu.controller.storelink import StoredAck, StoredCommand

PG_URL = os.environ.get("YOUXU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_reachable() -> str | None:
    try:
        eng = create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return None
    except (OperationalError, ImportError) as exc:
        return f"PostgreSQL not reachable at {PG_URL} ({str(exc).splitlines()[0][:100]})"


def rec(issuer: str, seq: int, state: str = "received", role: str = "dispatch", **kw: object) -> StoredCommand:
    return StoredCommand(command_id=kw.pop("command_id", str(uuid.uuid4())), issuer=issuer, seq=seq,  # type: ignore[arg-type]
                         role=role, state=state, payload='{"x":1}', received_s=1000.0 + seq, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """A factory: calling it again gives a new store instance on the same database."""
    made: list = []
    if request.param == "memory":
        shared = MemoryDispatchStore()

        def factory() -> MemoryDispatchStore:
            return shared
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'youxu.sqlite'}"

        def factory() -> SqlDispatchStore:  # type: ignore[misc]
            s = SqlDispatchStore.from_url(url)
            made.append(s)
            return s
    else:
        reason = pg_reachable()
        if reason:
            pytest.skip(reason)

        def factory() -> SqlDispatchStore:  # type: ignore[misc]
            s = SqlDispatchStore.from_url(PG_URL)
            made.append(s)
            return s
    factory.kind = request.param  # type: ignore[attr-defined]
    yield factory
    for s in made:
        s.close()


def test_accept_advances_the_issuers_seq_and_refuses_replays(make_store) -> None:
    store = make_store()
    issuer = f"dms-{uuid.uuid4().hex[:8]}"
    assert store.last_seq(issuer) is None
    first = rec(issuer, 10)
    assert store.accept(first)
    assert store.last_seq(issuer) == 10
    assert not store.accept(rec(issuer, 10))  # same seq, new id
    assert not store.accept(rec(issuer, 9))  # older
    assert not store.accept(rec(issuer, 11, command_id=first.command_id))  # same id again
    assert store.last_seq(issuer) == 10
    assert store.accept(rec(issuer, 11))
    assert store.accept(rec(f"{issuer}-other", 1))  # issuers are independent
    assert store.last_seq(issuer) == 11


def test_advance_seq_alone(make_store) -> None:
    store = make_store()
    issuer = f"dms-{uuid.uuid4().hex[:8]}"
    assert store.advance_seq(issuer, 5, 1.0)
    assert not store.advance_seq(issuer, 5, 2.0)
    assert store.advance_seq(issuer, 6, 3.0)
    assert store.last_seq(issuer) == 6


def test_commands_update_and_open_listing(make_store) -> None:
    store = make_store()
    issuer = f"dms-{uuid.uuid4().hex[:8]}"
    a, b = rec(issuer, 1, correlation_data=b"\x00\x01", response_topic="r/t"), rec(issuer, 2)
    assert store.accept(a) and store.accept(b)
    store.save_command(StoredCommand(**{**a.__dict__, "state": "completed", "end_s": 5.0, "applied_s": 3.0}))
    mine = [r for r in store.open_commands() if r.issuer == issuer]
    assert [r.command_id for r in mine] == [b.command_id]
    got = store.find_command(a.command_id)
    assert got is not None and (got.state, got.end_s, got.applied_s) == ("completed", 5.0, 3.0)
    assert got.correlation_data == b"\x00\x01" and got.response_topic == "r/t"
    assert store.find_command("nope-" + uuid.uuid4().hex) is None


def test_last_ack_is_the_latest(make_store) -> None:
    store = make_store()
    cid = str(uuid.uuid4())
    assert store.last_ack(cid) is None
    for i, status in enumerate(("received", "applied", "completed")):
        store.record_ack(StoredAck(cid, status, None, 100.0 + i, f'{{"status":"{status}"}}'))
    store.record_ack(StoredAck(None, "rejected", "BAD_SCHEMA", 104.0, "{}"))
    last = store.last_ack(cid)
    assert last is not None and last.status == "completed" and last.payload == '{"status":"completed"}'


def test_a_new_store_instance_still_refuses_the_replay(make_store) -> None:
    issuer = f"dms-{uuid.uuid4().hex[:8]}"
    first = make_store()
    c = rec(issuer, 42)
    assert first.accept(c)
    second = make_store()  # e.g. after a restart
    assert second.last_seq(issuer) == 42
    assert not second.accept(rec(issuer, 42))
    assert second.find_command(c.command_id) is not None


def accepts(recs: list[StoredCommand]) -> list[tuple[str, object]]:
    return [("accept", r) for r in recs]


def test_a_batch_of_accepts_decides_as_accept_one_at_a_time_in_one_transaction(make_store) -> None:
    """The batch sees what its earlier members stored: a later seq of the same issuer, the same id again."""
    store = make_store()
    issuer, other = f"dms-{uuid.uuid4().hex[:8]}", f"dms-{uuid.uuid4().hex[:8]}"
    assert store.accept(rec(issuer, 10))
    again = rec(issuer, 20)
    batch = [rec(issuer, 9), rec(issuer, 11), rec(issuer, 11), again, rec(issuer, 21, command_id=again.command_id),
             rec(other, 1), rec(issuer, 15), rec(issuer, 30)]
    assert store.write_batch(accepts(batch)) == [False, True, False, True, False, True, False, True]
    assert store.last_seq(issuer) == 30 and store.last_seq(other) == 1
    stored = store.find_commands([r.command_id for r in batch])
    assert set(stored) == {batch[1].command_id, again.command_id, batch[5].command_id, batch[7].command_id}
    assert stored[again.command_id].seq == 20
    assert store.write_batch([]) == []
    replay = make_store()  # another instance on the same database, as after a restart
    assert replay.write_batch(accepts([rec(issuer, 30), rec(issuer, 31)])) == [False, True]


def test_write_batch_saves_commands_as_last_given_and_acks_in_order(make_store) -> None:
    store = make_store()
    issuer = f"dms-{uuid.uuid4().hex[:8]}"
    a, b = rec(issuer, 1), rec(issuer, 2)
    assert store.accept(a)
    done = StoredCommand(**{**a.__dict__, "state": "completed", "end_s": 5.0, "applied_s": 3.0})
    active = StoredCommand(**{**a.__dict__, "state": "active"})
    acks = [StoredAck(a.command_id, "received", None, 1.0, '{"s":"received"}'),
            StoredAck(a.command_id, "completed", None, 5.0, '{"s":"completed"}'),
            StoredAck(b.command_id, "received", None, 2.0, '{"s":"b"}')]
    # b never accepted (kept in memory during an outage): inserted
    assert store.write_batch([("save", active), ("save", b), ("save", done), *(("ack", x) for x in acks)]) == []
    got = store.find_commands([a.command_id, b.command_id])
    assert (got[a.command_id].state, got[a.command_id].applied_s) == ("completed", 3.0)
    assert got[b.command_id].state == "received"
    last = store.last_acks([a.command_id, b.command_id, "nothing"])
    assert {k: v.status for k, v in last.items()} == {a.command_id: "completed", b.command_id: "received"}


def test_write_batch_takes_mixed_records_in_order_in_one_transaction(make_store) -> None:
    """Accepts after saves, seqs and acks of the same batch see them: one group commit as record by record."""
    store = make_store()
    issuer = f"dms-{uuid.uuid4().hex[:8]}"
    a, b, c = rec(issuer, 1), rec(issuer, 5), rec(issuer, 7)
    assert store.write_batch([("accept", a), ("save", StoredCommand(**{**a.__dict__, "state": "active"})),
                              ("ack", StoredAck(a.command_id, "received", None, 1.0, '{"s":"a"}')),
                              ("seq", (issuer, 6, 2.0)), ("accept", b), ("save", c), ("accept", c),
                              ("accept", rec(issuer, 8))]) == [True, False, False, True]
    assert store.last_seq(issuer) == 8
    got = store.find_commands([a.command_id, b.command_id, c.command_id])
    assert set(got) == {a.command_id, c.command_id} and got[a.command_id].state == "active"
    assert store.last_ack(a.command_id) is not None
