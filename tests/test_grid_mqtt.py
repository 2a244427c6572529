"""MqttGridLink against a real Mosquitto: acknowledgements, rejections, duplicates, persistence."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.dispatch_builders import ManualClock, command, report, rfc, utc_now
from tests.fixtures_mqtt import GridClient, Received, response_properties
from youxu.controller.store.dispatch_store import MemoryDispatchStore, SqlDispatchStore

KEY = b"0123456789abcdef-site-key"


def topic(link: Any, name: str) -> str:
    return f"youxu/v1/{link.site_id}/{name}"


async def online(g: GridClient, link: Any) -> None:
    """The site's subscriptions are in place once its `online` status (sent after them) is seen."""
    await g.until(lambda m: m.topic == topic(link, "status") and m.json()["state"] == "online")


async def test_acks_received_within_a_second_then_applied_then_completed(make_link, grid: GridClient) -> None:
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, minutes=1, import_max_kw=420.0)
    t0 = time.monotonic()
    grid.publish(topic(link, "dispatch"), cmd)
    received = await grid.until_ack(cmd["command_id"], "received")
    assert time.monotonic() - t0 < 1.0
    assert set(received) >= {"schema", "command_id", "status", "reason", "at", "achieved_kw"}
    assert received["schema"] == "youxu.ack/1" and received["at"].endswith("+08:00")
    assert link.limits(np.array([now + 1, now + 120])).site_import_max_kw.tolist() == [420, np.inf]
    link.after_tick(report(now + 1, 410.0, 60.0))
    applied = await grid.until_ack(cmd["command_id"], "applied")
    assert applied["achieved_kw"] == 410.0 and applied["reason"] is None
    link.clock.advance(61)
    link.after_tick(report(link.clock.now(), 300.0, 10.0))
    await grid.until_ack(cmd["command_id"], "completed")
    assert [a["status"] for a in grid.acks(cmd["command_id"])] == ["received", "applied", "completed"]
    st = link.stats()
    assert st["connected"] and st["acks_published"] == 3 and st["commands_open"] == 0 and not st["link_lost"]
    assert np.isinf(link.limits(np.array([link.clock.now()])).site_import_max_kw).all()


async def test_infeasible_command_is_applied_with_what_physics_allowed(make_link, grid: GridClient) -> None:
    link = await make_link(apply_grace_s=5)
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, import_max_kw=100.0)
    grid.publish(topic(link, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    link.after_tick(report(now + 1, 180.0, 0.0))
    link.clock.advance(6)
    link.after_tick(report(now + 6, 175.0, 0.0))
    ack = await grid.until_ack(cmd["command_id"], "applied")
    assert (ack["reason"], ack["achieved_kw"]) == ("INFEASIBLE", 175.0)


def _malformed(now: float) -> bytes:
    return b'{"schema": "youxu.dispatch/1", "command_id": "x1", '


REJECTIONS: list[tuple[str, Any, str, str | None, dict]] = [
    # (name, payload builder(now) -> payload, reason, field, link config)
    ("old_seq", lambda now: command(now, seq=4999), "OUT_OF_SEQUENCE", "seq", {}),
    ("same_seq_new_id", lambda now: command(now, seq=5000), "OUT_OF_SEQUENCE", "seq", {}),
    ("bad_signature", lambda now: command(now, key=b"not-the-site-key"), "BAD_SIGNATURE", "sig", {"key": True}),
    ("missing_signature", lambda now: command(now), "BAD_SIGNATURE", "sig", {"key": True}),
    ("wrong_site", lambda now: command(now, target="some-other-site"), "TARGET_MISMATCH", "target", {}),
    ("stale", lambda now: command(now - 600), "STALE", "issued_at", {}),
    ("future_issued_at", lambda now: command(now + 600), "STALE", "issued_at", {}),
    ("expired", lambda now: command(now, valid_from=rfc(now - 120), valid_until=rfc(now - 60)), "EXPIRED",
     "valid_until", {}),
    ("malformed_json", _malformed, "BAD_SCHEMA", "(root)", {}),
    ("wrong_type_seq", lambda now: command(now, seq="5001"), "BAD_SCHEMA", "seq", {}),
    ("wrong_type_limit", lambda now: command(now, periods=[{"offset_s": 0, "import_max_kw": "lots"}]), "BAD_SCHEMA",
     "periods[0].import_max_kw", {}),
    ("unknown_field_strict", lambda now: command(now, colour="red"), "BAD_SCHEMA", "colour", {"strict": True}),
    ("unsupported_type", lambda now: command(now, type="curtail"), "UNSUPPORTED", "type", {}),
]


@pytest.mark.parametrize(("name", "build", "reason", "field", "conf"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
async def test_rejections_are_answered_and_change_nothing(make_link, grid: GridClient, tmp_path: Path, name: str,
                                                           build: Any, reason: str, field: str | None,
                                                           conf: dict) -> None:
    key_file = None
    if conf.get("key"):
        key_file = tmp_path / "site.key"
        key_file.write_bytes(KEY + b"\n")
    store = MemoryDispatchStore()
    link = await make_link(store=store, hmac_key_file=str(key_file) if key_file else None,
                           strict=conf.get("strict", False), clock_skew_s=300)
    await online(grid, link)
    now = link.clock.now()
    first = command(now, seq=5000, import_max_kw=420.0, key=KEY if key_file else None)
    grid.publish(topic(link, "dispatch"), first)
    await grid.until_ack(first["command_id"], "received")
    before = link.limits(np.array([now, now + 1800]))
    n_commands = len(store.open_commands())

    payload = build(now)
    grid.publish(topic(link, "dispatch"), payload if isinstance(payload, bytes) else json.dumps(payload))
    cid = None if isinstance(payload, bytes) else payload["command_id"]
    ack = await grid.until_ack(cid, "rejected")
    assert (ack["reason"], ack.get("field")) == (reason, field), ack
    assert ack["achieved_kw"] is None and ack["detail"]

    after = link.limits(np.array([now, now + 1800]))
    assert after.site_import_max_kw.tolist() == before.site_import_max_kw.tolist()
    assert after.active_command_ids == before.active_command_ids == (first["command_id"],)
    assert len(store.open_commands()) == n_commands
    assert store.last_seq("bj-dms") == 5000
    assert grid.acks(cid, "received") == [] if cid else True


async def test_duplicate_command_id_gets_the_previous_ack(make_link, grid: GridClient) -> None:
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, import_max_kw=400.0)
    grid.publish(topic(link, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    link.after_tick(report(now + 1, 390.0, 20.0))
    first_applied = await grid.until_ack(cmd["command_id"], "applied")
    grid.publish(topic(link, "dispatch"), cmd)
    dup = await grid.until(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("duplicate") is True)
    assert {k: v for k, v in dup[0].json().items() if k != "duplicate"} == first_applied
    assert link.limits(np.array([now])).active_command_ids == (cmd["command_id"],)
    assert len(grid.acks(cmd["command_id"], "received")) == 1


async def test_mqtt5_response_topic_gets_acks_with_the_correlation_data(make_link, grid: GridClient) -> None:
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now)
    reply_to = topic(link, f"dispatch/ack/dms-{time.monotonic_ns()}")
    grid.publish(topic(link, "dispatch"), cmd, properties=response_properties(reply_to, b"\x01corr-42"))
    got = await grid.until(lambda m: m.topic == reply_to)
    assert got[0].json()["status"] == "received" and got[0].json()["command_id"] == cmd["command_id"]
    assert got[0].properties.CorrelationData == b"\x01corr-42"
    bad = command(now, seq="x")
    grid.publish(topic(link, "dispatch"), bad, properties=response_properties(reply_to, b"c2"))
    got = await grid.until(lambda m: m.topic == reply_to and m.json()["status"] == "rejected")
    assert got[0].properties.CorrelationData == b"c2"


async def test_commands_sent_while_away_arrive_but_expired_messages_do_not(make_link, grid: GridClient) -> None:
    store = MemoryDispatchStore()
    clock = ManualClock(utc_now())
    first = await make_link(clock=clock, store=store)
    site = first.site_id
    await online(grid, first)
    await first.stop()
    await grid.until(lambda m: m.topic == topic(first, "status") and m.json()["state"] == "offline")
    now = clock.now()
    kept, expiring = command(now, seq=10), command(now, seq=11)
    grid.publish(topic(first, "dispatch"), kept)
    grid.publish(topic(first, "dispatch"), expiring, properties=response_properties(topic(first, "dispatch/ack/x"),
                                                                                    b"", expiry_s=1))
    time.sleep(2.2)  # Mosquitto counts expiry in whole seconds: a 1 s message is gone after at most 2 s
    second = await make_link(site, clock=clock, store=store)  # same client id: the persistent session
    await grid.until_ack(kept["command_id"], "received")
    time.sleep(0.3)
    assert grid.acks(expiring["command_id"]) == []
    assert second.limits(np.array([clock.now()])).active_command_ids == (kept["command_id"],)


async def test_seqs_persist_a_replay_is_refused_by_a_new_link(make_link, grid: GridClient, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'youxu.sqlite'}"
    clock = ManualClock(utc_now())
    store1 = SqlDispatchStore.from_url(url)
    link1 = await make_link(clock=clock, store=store1)
    await online(grid, link1)
    now = clock.now()
    cmd = command(now, seq=7000, minutes=30, import_max_kw=333.0)
    grid.publish(topic(link1, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    await link1.stop()
    store1.close()

    link2 = await make_link(link1.site_id, clock=clock, store=SqlDispatchStore.from_url(url))
    assert link2.limits(np.array([now + 1])).site_import_max_kw.tolist() == [333.0]  # restored
    n_before = len(grid.messages)
    grid.publish(topic(link2, "dispatch"), cmd)  # the very same message again
    dup = await grid.until(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("duplicate") is True)
    assert dup[0].json()["command_id"] == cmd["command_id"]
    replay = dict(command(now, seq=7000, import_max_kw=999.0))
    grid.publish(topic(link2, "dispatch"), replay)
    ack = await grid.until_ack(replay["command_id"], "rejected")
    assert ack["reason"] == "OUT_OF_SEQUENCE"
    assert link2.limits(np.array([now + 1])).site_import_max_kw.tolist() == [333.0]
    fresh = command(now, seq=7001, issuer="bj-dms-2")
    grid.publish(topic(link2, "dispatch"), fresh)
    await grid.until_ack(fresh["command_id"], "received")
    assert len(grid.messages) > n_before


async def test_cancel_ends_a_command(make_link, grid: GridClient) -> None:
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, import_max_kw=400.0)
    grid.publish(topic(link, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    cancel = command(now, kind="cancel", cancels=cmd["command_id"])
    grid.publish(topic(link, "dispatch"), cancel)
    await grid.until_ack(cmd["command_id"], "cancelled")
    await grid.until_ack(cancel["command_id"], "completed")
    assert np.isinf(link.limits(np.array([now + 1])).site_import_max_kw).all()


def _is_status(m: Received, link: Any, state: str) -> bool:
    return m.topic == topic(link, "status") and m.json()["state"] == state
