"""The MQTT transport: TLS with client certificates and the deploy ACL, MQTT 3.1.1 and the fallback
to it, queues that never block and never drop acks or events."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.dispatch_builders import ManualClock, command, utc_now
from tests.fixtures_mqtt import Broker, TcpGate, connect_client
from tests.test_grid_mqtt import online, topic
from youxu.config.errors import UserError
from youxu.drivers.mqtt_link import MqttConnection, MqttSettings, Outbound, classify_topic, parse_broker_url


def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://broker.example") == parse_broker_url("mqtt://broker.example:1883")
    u = parse_broker_url("mqtts://site%2F1:p%40ss@10.0.0.2")
    assert (u.host, u.port, u.tls, u.username, u.password) == ("10.0.0.2", 8883, True, "site/1", "p@ss")
    for bad in ("http://x", "mqtt://", "mqtt://host:99999", "tcp://h:1"):
        with pytest.raises(UserError):
            parse_broker_url(bad)


def test_topic_classification() -> None:
    assert classify_topic("youxu/v1/s1/dispatch") == ("dispatch", "s1", None)
    assert classify_topic("youxu/v1/s1/sessions/P7/request") == ("session_request", "s1", "P7")
    assert classify_topic("youxu/v1/s1/dispatch/ack") == ("other", "s1", None)
    assert classify_topic("other/v1/s1/dispatch")[0] == "other"


async def test_tls_client_certificates_and_per_site_acl(make_link, mqtt_tls_broker: Broker, mqtt_certs: Path) -> None:
    link = await make_link("siteA", url=mqtt_tls_broker.url, ca_file=str(mqtt_certs / "ca.crt"),
                           cert_file=str(mqtt_certs / "siteA.crt"), key_file=str(mqtt_certs / "siteA.key"))
    grid = connect_client(mqtt_tls_broker, "grid-tls", certs=mqtt_certs, cn="grid")
    spy = connect_client(mqtt_tls_broker, "siteA-spy", certs=mqtt_certs, cn="siteA")
    site_b = connect_client(mqtt_tls_broker, "siteB-real", certs=mqtt_certs, cn="siteB")
    try:
        grid.subscribe("youxu/v1/#")
        await online(grid, link)
        cmd = command(link.clock.now())
        grid.publish(topic(link, "dispatch"), cmd)
        await grid.until_ack(cmd["command_id"], "received")

        spy.subscribe("youxu/v1/siteB/#")  # the broker accepts, but delivers nothing siteA may not read
        site_b.subscribe("youxu/v1/siteB/dispatch")
        grid.publish("youxu/v1/siteB/dispatch", {"probe": 1})
        await site_b.until(lambda m: m.topic == "youxu/v1/siteB/dispatch")  # control: siteB reads its own
        spy.publish("youxu/v1/siteB/status", {"state": "offline"}, qos=0)  # siteA cannot write for siteB
        spy.publish("youxu/v1/siteA/events", {"kind": "probe"}, qos=0)  # but for itself
        await grid.until(lambda m: m.topic == "youxu/v1/siteA/events" and m.json().get("kind") == "probe")
        await asyncio.sleep(0.3)
        assert spy.seen(lambda m: m.topic.startswith("youxu/v1/siteB/")) == []
        assert grid.seen(lambda m: m.topic == "youxu/v1/siteB/status") == []
    finally:
        for c in (grid, spy, site_b):
            c.close()


def test_tls_refuses_clients_without_a_certificate(mqtt_tls_broker: Broker, mqtt_certs: Path) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="nocert")
    c.tls_set(ca_certs=str(mqtt_certs / "ca.crt"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        c.connect("127.0.0.1", mqtt_tls_broker.port)
        for _ in range(50):  # TLS 1.3 reports the missing certificate on the first read
            if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError("refused")
    c.disconnect()


def test_bad_tls_files_are_a_user_error(mqtt_certs: Path, tmp_path: Path) -> None:
    s = MqttSettings(url="mqtts://127.0.0.1:1", client_id="x", ca_file=tmp_path / "missing.crt")
    with pytest.raises(UserError, match=r"missing\.crt"):
        MqttConnection(s, [], ManualClock(0.0), on_message=lambda m: None)


async def test_mqtt_311_configured(make_link, mqtt_broker: Broker) -> None:
    link = await make_link(protocol="3.1.1")
    assert link.conn.protocol == "3.1.1"
    grid = connect_client(mqtt_broker, f"grid-311-{time.monotonic_ns()}", v5=False)
    try:
        grid.subscribe(f"youxu/v1/{link.site_id}/#")
        await online(grid, link)
        cmd = command(link.clock.now())
        grid.publish(topic(link, "dispatch"), cmd)
        await grid.until_ack(cmd["command_id"], "received")
    finally:
        grid.close()


async def test_auto_falls_back_to_311_when_the_broker_refuses_5(make_link, mqtt_broker: Broker) -> None:
    gate = TcpGate(mqtt_broker.port, v311_only=True)
    try:
        link = await make_link(url=gate.url, start=False)
        assert link.conn.protocol == "5"
        await link.start()
        for _ in range(200):
            if link.connected:
                break
            await asyncio.sleep(0.02)
        assert link.connected and link.conn.protocol == "3.1.1" and gate.refused_v5 >= 1
        grid = connect_client(mqtt_broker, f"grid-fb-{time.monotonic_ns()}")
        try:
            grid.subscribe(f"youxu/v1/{link.site_id}/#")
            cmd = command(link.clock.now())
            grid.publish(topic(link, "dispatch"), cmd)
            await grid.until_ack(cmd["command_id"], "received")
        finally:
            grid.close()
    finally:
        gate.shutdown()


def test_queues_drop_old_telemetry_but_never_acks_or_events(mqtt_broker: Broker) -> None:
    gate = TcpGate(mqtt_broker.port)
    gate.close_gate()
    site = f"q{time.monotonic_ns()}"
    settings = MqttSettings(url=gate.url, client_id=f"youxu-{site}", telemetry_queue=5, reconnect_max_s=1)
    conn = MqttConnection(settings, [], ManualClock(utc_now()), on_message=lambda m: None)
    grid = connect_client(mqtt_broker, f"grid-q-{time.monotonic_ns()}")
    try:
        grid.subscribe(f"youxu/v1/{site}/#")
        conn.start()
        for i in range(40):
            conn.publish(Outbound(f"youxu/v1/{site}/telemetry", json.dumps({"i": i}).encode(), qos=0), "telemetry")
            if i % 4 == 0:
                conn.publish(Outbound(f"youxu/v1/{site}/events", json.dumps({"i": i}).encode()), "reliable")
            conn.publish(Outbound(f"youxu/v1/{site}/piles/P1/state", json.dumps({"i": i}).encode(), qos=0,
                                  retain=True), "state")
        assert not conn.connected
        assert conn.stats.telemetry_dropped == 35
        assert conn.queued() == 10 + 5 + 1
        gate.open_gate()
        events = grid.wait_for(lambda m: m.topic.endswith("/events"), timeout_s=10, count=10)
        assert [m.json()["i"] for m in events] == list(range(0, 40, 4))
        tele = grid.wait_for(lambda m: m.topic.endswith("/telemetry"), count=5)
        time.sleep(0.2)
        tele = grid.seen(lambda m: m.topic.endswith("/telemetry"))
        assert [m.json()["i"] for m in tele] == [35, 36, 37, 38, 39]
        state = grid.wait_for(lambda m: m.topic.endswith("/state"))
        assert [m.json()["i"] for m in state] == [39]
    finally:
        conn.stop(flush_s=0.5)
        grid.close()
        gate.shutdown()


def _burst_s(conn: MqttConnection, site: str, n: int = 40) -> float:
    """Seconds to queue `n` telemetry, event and pile-state messages."""
    t0 = time.perf_counter()
    for i in range(n):
        body = json.dumps({"i": i}).encode()
        conn.publish(Outbound(f"youxu/v1/{site}/telemetry", body, qos=0), "telemetry")
        conn.publish(Outbound(f"youxu/v1/{site}/events", body), "reliable")
        conn.publish(Outbound(f"youxu/v1/{site}/piles/P1/state", body, qos=0, retain=True), "state")
    return time.perf_counter() - t0


def test_publishing_takes_no_longer_with_the_broker_away(mqtt_broker: Broker) -> None:
    """Publishing never waits for the broker: the same bursts take about as long into a connection whose
    broker cannot be reached as into a connected one (best of five each, measured side by side)."""
    gate = TcpGate(mqtt_broker.port)
    gate.close_gate()
    site = f"burst{time.monotonic_ns()}"
    conns = {name: MqttConnection(MqttSettings(url=url, client_id=f"youxu-{site}-{name}", reconnect_max_s=1), [],
                                  ManualClock(utc_now()), on_message=lambda m: None)
             for name, url in (("away", gate.url), ("up", mqtt_broker.url))}
    try:
        for c in conns.values():
            c.start()
        deadline = time.monotonic() + 10
        while not conns["up"].connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert conns["up"].connected and not conns["away"].connected
        best = {name: min(_burst_s(c, site) for _ in range(5)) for name, c in conns.items()}
        assert not conns["away"].connected and conns["away"].queued() > 0
        assert best["away"] < 5 * best["up"], best
    finally:
        for c in conns.values():
            c.stop(flush_s=0.5)
        gate.shutdown()


async def test_connection_loss_mid_session_keeps_the_link_working(make_link, mqtt_broker: Broker) -> None:
    gate = TcpGate(mqtt_broker.port)
    grid = connect_client(mqtt_broker, f"grid-cut-{time.monotonic_ns()}")
    try:
        link = await make_link(url=gate.url, link_loss_s=3600)
        grid.subscribe(f"youxu/v1/{link.site_id}/#")
        await online(grid, link)
        gate.close_gate()
        await grid.until(lambda m: m.topic == topic(link, "status") and m.json()["state"] == "offline")  # the will
        cmd = command(link.clock.now(), import_max_kw=410.0)
        grid.publish(topic(link, "dispatch"), cmd)  # queued by the broker in the persistent session
        link.event("test_event", "while cut off")
        gate.open_gate()
        await grid.until_ack(cmd["command_id"], "received", timeout_s=10)
        await grid.until_event("test_event")
        assert link.limits(np.array([link.clock.now()])).site_import_max_kw.tolist() == [410.0]
    finally:
        grid.close()
        gate.shutdown()


