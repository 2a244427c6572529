"""MqttGridLink against a real Mosquitto: link loss, broker restarts, telemetry, events, bookings."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from tests import contract
from tests.dispatch_builders import command, report, rfc
from tests.fixtures_mqtt import Broker, GridClient, TcpGate, connect_client
from tests.test_grid_mqtt import online, topic
from youxu.controller.grid.dispatch_schema import parse_rfc3339


async def test_link_loss_applies_the_default_until_a_fresh_command(make_link, grid: GridClient) -> None:
    link = await make_link(link_loss_s=30)
    await online(grid, link)
    now = link.clock.now()
    default = command(now, import_max_kw=300.0, valid_until=None, seq=1)
    grid.publish(topic(link, "default"), default, retain=True)
    await grid.until_ack(default["command_id"], "received")
    cmd = command(now, import_max_kw=420.0, minutes=60, seq=2)
    grid.publish(topic(link, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    t = np.array([now + 10, now + 4000])
    assert link.limits(t).site_import_max_kw.tolist() == [420, 300]  # default only where nothing else is

    link.clock.advance(31)
    assert link.limits(t).site_import_max_kw.tolist() == [300, 300]  # in force at once, before any event
    link.after_tick(report(link.clock.now(), 280.0, 20.0))
    lost = await grid.until_event("link_lost")
    assert lost["default_command_id"] == default["command_id"] and lost["silent_s"] >= 30
    assert link.link_lost

    grid.publish(topic(link, "heartbeat"), {"at": rfc(link.clock.now())}, qos=0)
    await grid.until_event("link_restored")
    assert not link.link_lost
    assert link.limits(t).site_import_max_kw.tolist() == [300, 300]  # still the default: no fresh command yet
    assert default["command_id"] in link.limits(t).active_command_ids

    fresh = command(link.clock.now(), import_max_kw=430.0, minutes=60, seq=3, issuer="bj-dms-b")
    grid.publish(topic(link, "dispatch"), fresh)
    await grid.until_event("fallback_ended")
    assert link.limits(t).site_import_max_kw.tolist() == [420, 300]
    grid.publish(topic(link, "default"), b"", retain=True)  # clear the retained default


async def test_link_loss_without_default_uses_the_configured_fallback(make_link, grid: GridClient) -> None:
    link = await make_link(link_loss_s=10, fallback_limit_kw=250.0)
    await online(grid, link)
    now = link.clock.now()
    assert np.isinf(link.limits(np.array([now])).site_import_max_kw).all()
    grid.publish(topic(link, "heartbeat"), {"at": rfc(now)}, qos=0)
    link.clock.advance(8)
    await asyncio.sleep(0.1)
    link.after_tick(report(link.clock.now(), 200.0, 20.0))
    link.clock.advance(8)  # 16 s after start, 8 s after the heartbeat: still up
    link.after_tick(report(link.clock.now(), 200.0, 20.0))
    assert not link.link_lost
    link.clock.advance(3)
    link.after_tick(report(link.clock.now(), 200.0, 20.0))
    ev = await grid.until_event("link_lost")
    assert ev["fallback_limit_kw"] == 250.0 and "250" in ev["message"]
    assert link.limits(np.array([link.clock.now() + 3600])).site_import_max_kw.tolist() == [250.0]


async def _barrier(grid: GridClient, link) -> None:
    """Every message the grid sent before this one has been handled: the link handles its inbox in
    order, so the rejection of a command sent now comes after them (a rejected command does not count
    as hearing from the grid)."""
    junk = dict(command(link.clock.now()), priority="high")
    grid.publish(topic(link, "dispatch"), junk)
    ack = await grid.until_ack(junk["command_id"], "rejected")
    assert ack["reason"] == "BAD_SCHEMA"


@pytest.mark.parametrize("kind", ["stale", "future", "garbage", "no_at", "retained", "fresh"])
async def test_stale_garbage_or_retained_heartbeats_do_not_keep_the_link(make_link, grid: GridClient,
                                                                         mqtt_broker: Broker, kind: str) -> None:
    """8 s into a 10 s link-loss timeout the grid sends one heartbeat of `kind`; 3 s later the link is
    lost unless that heartbeat was a fresh, live one (the control case)."""
    gate = TcpGate(mqtt_broker.port)
    try:
        link = await make_link(url=gate.url, link_loss_s=10, clock_skew_s=60)
        await online(grid, link)
        hb = topic(link, "heartbeat")
        link.clock.advance(8)
        now = link.clock.now()
        if kind == "retained":
            # retained messages reach a subscriber flagged `retain` only when it subscribes: send it while the
            # link is away, and let the link's resubscription on reconnect deliver it
            gate.close_gate()
            for _ in range(250):
                if not link.connected:
                    break
                await asyncio.sleep(0.02)
            assert not link.connected
            received = link.conn.stats.received
            grid.publish(hb, {"at": rfc(now)}, qos=0, retain=True)
            gate.open_gate()
            await grid.until(lambda m: m.topic == topic(link, "status") and m.json()["state"] == "online", count=2,
                             timeout_s=10)
            await _barrier(grid, link)
            assert link.conn.stats.received >= received + 2  # the retained heartbeat, then the barrier
        else:
            payload = {"stale": {"at": rfc(now - 3600)}, "future": {"at": rfc(now + 3600)}, "garbage": b"garbage",
                       "no_at": {"when": rfc(now)}, "fresh": {"at": rfc(now)}}[kind]
            grid.publish(hb, payload, qos=0)
            await _barrier(grid, link)
        link.clock.advance(3)  # 11 s after the last message the link accepted at start, 3 s after the heartbeat
        link.after_tick(report(link.clock.now(), 100.0, 0.0))
        if kind == "fresh":
            await asyncio.sleep(0.2)
            assert not link.link_lost
            assert not grid.seen(lambda m: m.topic == topic(link, "events") and m.json()["kind"] == "link_lost")
        else:
            lost = await grid.until_event("link_lost")
            assert lost["silent_s"] >= 11 and link.link_lost
    finally:
        if kind == "retained":
            grid.publish(topic(link, "heartbeat"), b"", qos=0, retain=True)  # clear the retained heartbeat
        gate.shutdown()


async def test_broker_restart_resumes_the_same_link(make_link, own_broker: Broker) -> None:
    link = await make_link(url=own_broker.url)
    g = connect_client(own_broker, "grid-restart-1")
    g.subscribe("youxu/v1/#")
    await online(g, link)
    g.close()
    own_broker.stop()
    for _ in range(100):
        if not link.connected:
            break
        await asyncio.sleep(0.05)
    assert not link.connected
    link.event("meter_fault", "queued while the broker is away")  # never dropped
    link.after_tick(report(link.clock.now(), 100.0, 0.0))  # telemetry may be, acks and events not
    own_broker.start()
    g = connect_client(own_broker, "grid-restart-2")
    g.subscribe("youxu/v1/#")
    try:
        await g.until(lambda m: m.topic == topic(link, "status") and m.json()["state"] == "online", timeout_s=10)
        await g.until_event("meter_fault", timeout_s=10)
        assert link.connected and link.conn.stats.connects >= 2
        cmd = command(link.clock.now())
        g.publish(topic(link, "dispatch"), cmd)
        await g.until_ack(cmd["command_id"], "received")
    finally:
        g.close()


async def test_telemetry_every_period_with_the_contract_keys(make_link, grid: GridClient) -> None:
    link = await make_link(telemetry_period_s=10)
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, import_max_kw=420.0)
    grid.publish(topic(link, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    for dt in (0, 1, 5, 10, 11):
        link.after_tick(report(now + dt, 300.0 + dt, 40.0, limit_kw=420.0))
    msgs = await grid.until(lambda m: m.topic == topic(link, "telemetry"), count=2)
    await asyncio.sleep(0.2)
    msgs = grid.seen(lambda m: m.topic == topic(link, "telemetry"))
    assert len(msgs) == 2
    tel = msgs[0].json()
    # the contract's keys, and the compatible extensions: `stale` (values not measured), `unreachable` piles
    assert set(tel) >= contract.TELEMETRY_KEYS and set(tel) - contract.TELEMETRY_KEYS == {"stale"}
    assert tel["stale"] == []
    assert tel["schema"] == contract.TELEMETRY_SCHEMA and tel["total_kw"] == 300.0 and tel["limit_kw"] == 420.0
    assert set(tel["phase_kw"]) == contract.TELEMETRY_PHASES
    assert set(tel["piles"]) == contract.TELEMETRY_PILE_COUNTS | {"unreachable"}
    assert tel["piles"] == {"charging": 1, "idle": 1, "faulted": 0, "unreachable": 0}
    assert tel["active_commands"] == [cmd["command_id"]]
    assert msgs[1].json()["total_kw"] == 310.0


async def test_pile_state_retained_and_only_on_change(make_link, grid: GridClient, mqtt_broker: Broker) -> None:
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    p1_topic = topic(link, "piles/P001/state")
    link.after_tick(report(now, 300.0, 7.0))
    await grid.until(lambda m: m.topic == p1_topic)
    link.after_tick(report(now + 1, 300.0, 7.1))  # same status, power within 0.5 kW: nothing new
    await asyncio.sleep(0.2)
    link.after_tick(report(now + 2, 300.0, 0.0, pile_status={"P001": "fault", "P002": "available"}))
    await grid.until(lambda m: m.topic == p1_topic, count=2)
    await asyncio.sleep(0.2)
    p1 = [m.json() for m in grid.seen(lambda m: m.topic == p1_topic)]
    assert [p["status"] for p in p1] == ["charging", "fault"]
    assert set(p1[0]) >= {"pile_id", "at", "status", "power_kw", "energy_kwh", "session", "setpoint_kw"}
    fault = await grid.until_event("pile_fault")
    assert fault["pile"] == "P001"
    late = connect_client(mqtt_broker, f"late-{time.monotonic_ns()}")
    try:
        late.subscribe(topic(link, "piles/+/state"))
        got = late.wait_for(lambda m: m.topic.endswith("P001/state"))
        assert got[0].retain and got[0].json()["status"] == "fault"
    finally:
        late.close()


async def test_overload_and_safe_mode_events_and_status(make_link, grid: GridClient) -> None:
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    link.after_tick(report(now, 560.0, 60.0, limit_kw=550.0))
    ev = await grid.until_event("overload")
    assert ev["total_kw"] == 560.0 and ev["limit_kw"] == 550.0
    link.after_tick(report(now + 1, 560.0, 60.0, limit_kw=550.0))
    link.after_tick(report(now + 2, 500.0, 10.0, limit_kw=550.0))
    await grid.until_event("overload_cleared")
    assert len(grid.events("overload")) == 1
    # the loop announces safe mode with its reason; the link moves the retained status with the ticks
    link.event("safe_mode", "5 ticks in a row over budget")
    link.after_tick(report(now + 3, 400.0, 0.0, safe_mode=True))
    await grid.until_event("safe_mode")
    await grid.until(lambda m: m.topic == topic(link, "status") and m.json()["state"] == "safe_mode")
    link.event("safe_mode_cleared", "ticks healthy again")
    link.after_tick(report(now + 4, 400.0, 0.0))
    await grid.until_event("safe_mode_cleared")
    status = await grid.until(lambda m: m.topic == topic(link, "status") and m.json()["state"] == "online", count=2)
    assert set(status[-1].json()) == contract.STATUS_KEYS
    assert len(grid.events("safe_mode")) == 1 and len(grid.events("safe_mode_cleared")) == 1


async def test_bookings_become_bookings_or_rejection_events(make_link, grid: GridClient) -> None:
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    ok = {"schema": "youxu.session/1", "departure": rfc(now + 8 * 3600), "energy_kwh": 18.5, "v2g": False,
          "min_soc": 0.3, "priority": "urgent"}
    grid.publish(topic(link, "sessions/P001/request"), ok)
    await grid.until_event("booking_accepted")
    bookings = link.take_bookings()
    assert len(bookings) == 1
    b = bookings[0]
    assert (b.pile_id, b.energy_kwh, b.priority, b.min_soc) == ("P001", 18.5, "urgent", 0.3)
    assert b.departure_s == pytest.approx(round(now) + 8 * 3600, abs=1)
    assert link.take_bookings() == []
    cases = [("P001", dict(ok, energy_kwh="lots"), "BAD_SCHEMA", "energy_kwh"),
             ("P001", dict(ok, departure=rfc(now - 60)), "BAD_SCHEMA", "departure"),
             ("P001", dict(ok, v2g=True), "UNSUPPORTED", "v2g"),
             ("P999", ok, "UNKNOWN_PILE", "pile"),
             ("P002", b"{", "BAD_SCHEMA", "(root)")]
    for pile, payload, _reason, _field in cases:
        grid.publish(topic(link, f"sessions/{pile}/request"), payload if isinstance(payload, bytes)
                     else json.dumps(payload))
    rejected = await grid.until(lambda m: m.topic.endswith("/events") and m.json()["kind"] == "booking_rejected",
                                count=len(cases))
    got = [(e.json()["pile"], e.json()["reason"], e.json()["field"]) for e in rejected]
    assert got == [(p, r, f) for p, _pl, r, f in cases]
    assert link.take_bookings() == []


async def test_the_links_own_events_land_in_the_events_table(make_link, grid: GridClient, tmp_path) -> None:
    from sqlalchemy import select

    from youxu.controller.store.dispatch_store import SqlDispatchStore
    from youxu.controller.store.schema import events
    from youxu.controller.store.storage import Store

    store = Store(f"sqlite:///{tmp_path / 'youxu.sqlite'}")
    try:
        link = await make_link(link_loss_s=10, store=SqlDispatchStore(store.engine), recorder=store)
        await online(grid, link)
        pid = next(iter(link.piles))
        grid.publish(topic(link, f"sessions/{pid}/request"), {"schema": "youxu.session/1", "energy_kwh": 5.0,
                                                             "departure": rfc(link.clock.now() + 3600)})
        await grid.until_event("booking_accepted")
        link.clock.advance(11)
        link.after_tick(report(link.clock.now(), 200.0, 20.0))
        await grid.until_event("link_lost")
        assert store.flush(10.0)
        with store.engine.connect() as c:
            rows = {r.kind: r for r in c.execute(select(events))}
        assert {"booking_accepted", "link_lost"} <= set(rows)
        assert rows["booking_accepted"].fields["pile"] == pid
        assert rows["link_lost"].t_s == pytest.approx(link.clock.now())
    finally:
        store.close()


async def test_an_export_limit_is_applied_only_once_the_export_is_within_it(make_link, grid: GridClient) -> None:
    """`applied` means the site is within the command: exporting 50 kW under a 20 kW export cap is not,
    so the ack waits for the grace time and then says INFEASIBLE with what was achieved."""
    link = await make_link(apply_grace_s=5)
    await online(grid, link)
    now = link.clock.now()
    tight = command(now, import_max_kw=420.0, export_max_kw=20.0, issuer="bj-dms-export")
    loose = command(now, import_max_kw=420.0, export_max_kw=60.0, issuer="bj-dms-export-b")
    for c in (tight, loose):
        grid.publish(topic(link, "dispatch"), c)
        await grid.until_ack(c["command_id"], "received")
    link.after_tick(report(now + 1, -50.0, -50.0))  # 50 kW export: within the 60 kW cap, not the 20 kW one
    assert (await grid.until_ack(loose["command_id"], "applied"))["reason"] is None
    link.after_tick(report(now + 6, -50.0, -50.0))  # the grace time has passed
    applied = await grid.until_ack(tight["command_id"], "applied")
    assert (applied["reason"], applied["achieved_kw"]) == ("INFEASIBLE", -50.0)
    assert parse_rfc3339(applied["at"]) == pytest.approx(now + 6, abs=0.01)
    assert [a["status"] for a in grid.acks(tight["command_id"])] == ["received", "applied"]


async def test_the_default_caps_export_too(make_link, grid: GridClient) -> None:
    """The default's export cap applies where no command is in force and everywhere once the link is
    lost, like its import cap."""
    link = await make_link(link_loss_s=30)
    await online(grid, link)
    now = link.clock.now()
    default = command(now, import_max_kw=300.0, export_max_kw=40.0, valid_until=None, issuer="bj-dms-default")
    grid.publish(topic(link, "default"), default, retain=True)
    try:
        await grid.until_ack(default["command_id"], "received")
        cmd = command(now, import_max_kw=420.0, export_max_kw=100.0, minutes=60, issuer="bj-dms-default")
        grid.publish(topic(link, "dispatch"), cmd)
        await grid.until_ack(cmd["command_id"], "received")
        t = np.array([now + 10, now + 4000])
        lim = link.limits(t)
        assert (lim.site_import_max_kw.tolist(), lim.site_export_max_kw.tolist()) == ([420, 300], [100, 40])
        link.clock.advance(31)
        link.after_tick(report(link.clock.now(), 200.0, 20.0))
        await grid.until_event("link_lost")
        lim = link.limits(t)
        assert (lim.site_import_max_kw.tolist(), lim.site_export_max_kw.tolist()) == ([300, 300], [40, 40])
    finally:
        grid.publish(topic(link, "default"), b"", retain=True)


async def test_a_cancelled_default_no_longer_limits(make_link, grid: GridClient) -> None:
    """Cancelling the default ends it: nothing limits where no command is, and a lost link falls back to
    the configured limit, not to the cancelled default."""
    link = await make_link(link_loss_s=30, fallback_limit_kw=250.0)
    await online(grid, link)
    now = link.clock.now()
    default = command(now, import_max_kw=300.0, valid_until=None, issuer="bj-dms-cancel")
    grid.publish(topic(link, "default"), default, retain=True)
    try:
        await grid.until_ack(default["command_id"], "received")
        t = np.array([now + 10])
        assert link.limits(t).site_import_max_kw.tolist() == [300]
        cancel = command(now, kind="cancel", cancels=default["command_id"], issuer="bj-dms-cancel")
        grid.publish(topic(link, "dispatch"), cancel)
        await grid.until_ack(default["command_id"], "cancelled")
        await grid.until_ack(cancel["command_id"], "completed")
        assert np.isinf(link.limits(t).site_import_max_kw).all()
        assert default["command_id"] not in link.limits(t).active_command_ids
        link.clock.advance(31)
        link.after_tick(report(link.clock.now(), 200.0, 20.0))
        lost = await grid.until_event("link_lost")
        assert lost["default_command_id"] is None and lost["fallback_limit_kw"] == 250.0
        assert link.limits(np.array([link.clock.now()])).site_import_max_kw.tolist() == [250.0]
    finally:
        grid.publish(topic(link, "default"), b"", retain=True)


async def test_the_grace_time_of_a_later_command_runs_from_its_start(make_link, grid: GridClient) -> None:
    """A command received now for 100 s later is judged from its start: over its limit 1 s after the start
    is not yet INFEASIBLE; it is once the grace time has passed since the start."""
    link = await make_link(apply_grace_s=5)
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, import_max_kw=420.0, start_offset_s=100)
    grid.publish(topic(link, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    start = parse_rfc3339(cmd["valid_from"])
    link.after_tick(report(start + 1, 500.0, 80.0))
    link.after_tick(report(start + 6, 500.0, 80.0))
    applied = await grid.until_ack(cmd["command_id"], "applied")
    assert applied["reason"] == "INFEASIBLE" and parse_rfc3339(applied["at"]) == pytest.approx(start + 6, abs=0.01)


SITE_TOPICS = [t for t in contract.TOPICS.values() if t.direction == "site->grid"]


async def test_site_topics_carry_the_contract_qos_and_retain_flags(make_link, grid: GridClient,
                                                                 mqtt_broker: Broker) -> None:
    """Every topic the site publishes, with the QoS and retain flag of the contract's table: seen live by a
    QoS 1 subscriber (which receives the publisher's QoS) and by one that subscribes afterwards (which
    receives exactly the retained topics, flagged so)."""
    link = await make_link(telemetry_period_s=1)
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, import_max_kw=420.0)
    grid.publish(contract.topic(link.site_id, "dispatch"), cmd)
    await grid.until_ack(cmd["command_id"], "received")
    link.after_tick(report(now + 1, 300.0, 7.0))  # telemetry, pile state, the applied ack
    link.event("meter_fault", "probe")
    names = {t.name: contract.topic(link.site_id, t.name, pile_id="P001") for t in SITE_TOPICS}
    for name, full in names.items():
        got = await grid.until(lambda m, full=full: m.topic == full)
        assert {m.qos for m in got} == {contract.TOPICS[name].qos}, name
        assert not any(m.retain for m in got), name  # live delivery to a subscriber already there

    late = connect_client(mqtt_broker, f"late-{time.monotonic_ns()}")
    try:
        late.subscribe(contract.topic(link.site_id, "status").rsplit("/", 1)[0] + "/#")
        marker = contract.topic(link.site_id, "heartbeat")
        late.publish(marker, {"at": rfc(link.clock.now())}, qos=1)
        await late.until(lambda m: m.topic == marker)  # the broker sends retained messages before it
        retained = {m.topic for m in late.seen(lambda m: m.retain)}
        expected = {full for name, full in names.items() if contract.TOPICS[name].retained}
        expected.add(contract.topic(link.site_id, "piles/{pile_id}/state", pile_id="P002"))
        assert retained == expected
        assert {m.topic for m in late.seen(lambda m: not m.retain)} == {marker}
    finally:
        late.close()


async def test_superseded_and_expired_acks_on_the_wire(make_link, grid: GridClient) -> None:
    """The contract's final stages reach the grid: a limit the same issuer replaces is `superseded`, one
    that ends without ever being applied is `expired`; every ack carries the contract's keys."""
    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    old = command(now, import_max_kw=420.0, minutes=60, issuer="bj-dms-stages")
    grid.publish(topic(link, "dispatch"), old)
    await grid.until_ack(old["command_id"], "received")
    new = command(now, import_max_kw=400.0, minutes=1, issuer="bj-dms-stages")
    grid.publish(topic(link, "dispatch"), new)
    await grid.until_ack(old["command_id"], "superseded")
    await grid.until_ack(new["command_id"], "received")
    link.clock.advance(61)  # no tick has shown the site within it: it ends unapplied
    await grid.until_ack(new["command_id"], "expired")
    acks = grid.acks()
    assert [a["status"] for a in acks if a["command_id"] == old["command_id"]] == ["received", "superseded"]
    assert [a["status"] for a in acks if a["command_id"] == new["command_id"]] == ["received", "expired"]
    for a in acks:
        assert set(a) >= contract.ACK_KEYS and a["schema"] == contract.ACK_SCHEMA
        assert a["status"] in contract.ACK_STATUSES
    assert {a["status"] for a in acks} - {contract.ACK_FIRST} <= contract.ACK_FINAL


async def test_a_retained_default_on_reconnect_does_not_restore_a_lost_link(make_link, grid: GridClient,
                                                                           mqtt_broker: Broker) -> None:
    """The broker handing over a retained default when the site reconnects is not the grid talking: a lost
    link stays lost (the default is taken in), until a live heartbeat comes."""
    gate = TcpGate(mqtt_broker.port)
    link = None
    try:
        link = await make_link(url=gate.url, link_loss_s=10)
        await online(grid, link)
        link.clock.advance(11)
        link.after_tick(report(link.clock.now(), 100.0, 0.0))
        await grid.until_event("link_lost")
        gate.close_gate()
        for _ in range(250):
            if not link.connected:
                break
            await asyncio.sleep(0.02)
        assert not link.connected
        default = command(link.clock.now(), import_max_kw=300.0, valid_until=None, issuer="bj-dms-retained")
        # QoS 0, so that the broker does not queue a live copy in the site's persistent session: what reaches
        # the site is only the retained copy its resubscription brings (a QoS 1 copy queued while it was away
        # is the grid talking, and does restore the link)
        grid.publish(topic(link, "default"), default, qos=0, retain=True)
        gate.open_gate()
        await grid.until_ack(default["command_id"], "received", timeout_s=10)  # delivered on resubscription
        await _barrier(grid, link)  # anything the default's handling published is out before this
        assert link.link_lost
        assert not grid.seen(lambda m: m.topic == topic(link, "events") and m.json()["kind"] == "link_restored")
        assert link.limits(np.array([link.clock.now()])).site_import_max_kw.tolist() == [300.0]
        grid.publish(topic(link, "heartbeat"), {"at": rfc(link.clock.now())}, qos=0)
        await grid.until(lambda m: m.topic == topic(link, "events") and m.json()["kind"] == "link_restored")
        assert not link.link_lost
    finally:
        if link is not None:
            grid.publish(topic(link, "default"), b"", retain=True)
        gate.shutdown()
