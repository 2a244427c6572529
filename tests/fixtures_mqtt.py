"""Real Mosquitto brokers for the MQTT tests (plain, and TLS with the deploy config and ACL).

Skips with a clear reason when the `mosquitto` binary is missing (CI installs it with apt-get).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "mosquitto"


def mosquitto_binary() -> str | None:
    for cand in (os.environ.get("MOSQUITTO"), shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not open port {port}")


class Broker:
    """A mosquitto process on a fixed free port; can be stopped and started again (same port, same
    persistence directory, so sessions and retained messages survive)."""

    def __init__(self, binary: str, workdir: Path, config: str, port: int, tls: bool = False) -> None:
        self.binary, self.workdir, self.port, self.tls = binary, workdir, port, tls
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.workdir / "mosquitto.out", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            wait_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError((self.workdir / "mosquitto.out").read_text()[-2000:]) from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def _as_root() -> str:
    """Run as root (containers), mosquitto would switch to user `mosquitto`, which cannot read pytest's
    private temporary directories: tell it to stay."""
    return "user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""


def plain_config(workdir: Path, port: int) -> str:
    return _as_root() + (f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nmax_queued_messages 1000\nlog_dest stdout\n"
            "log_type error\nlog_type warning\n")


def deploy_tls_config(workdir: Path, tls_port: int, plain_port: int) -> str:
    """deploy/mosquitto/mosquitto.conf with its paths and ports moved into the test directory."""
    text = (DEPLOY / "mosquitto.conf").read_text()
    text = text.replace("/etc/mosquitto/youxu/", f"{workdir}/").replace("/var/lib/mosquitto/", f"{workdir}/")
    text = text.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n")
    text = text.replace("listener 1883 127.0.0.1\n", f"listener {plain_port} 127.0.0.1\n")
    return _as_root() + text.replace("log_dest syslog", "log_dest stdout")


@pytest.fixture(scope="session")
def mosquitto_bin() -> str:
    b = mosquitto_binary()
    if b is None:
        pytest.skip("mosquitto broker binary not found (apt-get install mosquitto, or set MOSQUITTO=/path)")
    return b


@pytest.fixture(scope="session")
def mqtt_broker(mosquitto_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One plain broker for the session (tests use distinct site ids)."""
    d = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    b = Broker(mosquitto_bin, d, plain_config(d, port), port)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(mosquitto_bin: str, tmp_path: Path) -> Iterator[Broker]:
    """A plain broker of the test's own, to stop and restart."""
    d = tmp_path / "mosquitto"
    d.mkdir()
    port = free_port()
    b = Broker(mosquitto_bin, d, plain_config(d, port), port)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def mqtt_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA, server and client certificates (CNs siteA, siteB, grid) from deploy/mosquitto/make-test-ca.sh."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found (needed to make test certificates)")
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(["sh", str(DEPLOY / "make-test-ca.sh"), str(d), "siteA", "siteB", "grid"], check=True,
                   capture_output=True)
    return d


@pytest.fixture(scope="session")
def mqtt_tls_broker(mosquitto_bin: str, mqtt_certs: Path) -> Iterator[Broker]:
    """The deploy config (TLS, client certificates, per-site ACL) on a free port."""
    shutil.copy(DEPLOY / "acl", mqtt_certs / "acl")
    port, plain = free_port(), free_port()
    b = Broker(mosquitto_bin, mqtt_certs, deploy_tls_config(mqtt_certs, port, plain), port, tls=True)
    b.start()
    yield b
    b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    properties: Any = None
    qos: int = 0

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class GridClient:
    """The grid side of a test: a paho client that records everything it receives."""

    client: mqtt.Client
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connect_reason: Any = None  # the broker's CONNACK reason

    def on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          getattr(msg, "properties", None), int(msg.qos)))

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos)
        assert done.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: Any, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.client.publish(topic, data, qos=qos, retain=retain, properties=properties).wait_for_publish(5)

    def seen(self, pred: Callable[[Received], bool]) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if pred(m)]

    def wait_for(self, pred: Callable[[Received], bool], timeout_s: float = 5.0, count: int = 1) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.seen(pred)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        with self.lock:
            dump = "\n".join(f"  {m.topic} {m.payload[:200]!r}" for m in self.messages[-15:])
        raise AssertionError(f"timed out after {timeout_s} s waiting for {count} message(s); last seen:\n{dump}")

    async def until(self, pred: Callable[[Received], bool], timeout_s: float = 5.0, count: int = 1) -> list[Received]:
        """`wait_for` for async tests: polls without blocking the event loop the link runs on."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.seen(pred)
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        return self.wait_for(pred, 0.0, count)  # raises with what was seen

    async def until_ack(self, command_id: str | None, status: str, timeout_s: float = 5.0) -> dict:
        def pred(m: Received) -> bool:
            if not m.topic.endswith("/dispatch/ack"):
                return False
            a = m.json()
            return a.get("command_id") == command_id and a.get("status") == status

        return (await self.until(pred, timeout_s))[0].json()

    async def until_event(self, kind: str, timeout_s: float = 5.0) -> dict:
        got = await self.until(lambda m: m.topic.endswith("/events") and m.json().get("kind") == kind, timeout_s)
        return got[0].json()

    def acks(self, command_id: str | None = None, status: str | None = None) -> list[dict]:
        out = []
        for m in self.seen(lambda m: m.topic.endswith("/dispatch/ack")):
            a = m.json()
            if (command_id is None or a.get("command_id") == command_id) and (status is None or a["status"] == status):
                out.append(a)
        return out

    def wait_ack(self, command_id: str | None, status: str, timeout_s: float = 5.0) -> dict:
        def pred(m: Received) -> bool:
            if not m.topic.endswith("/dispatch/ack"):
                return False
            a = m.json()
            return a.get("command_id") == command_id and a.get("status") == status

        return self.wait_for(pred, timeout_s)[0].json()

    def events(self, kind: str | None = None) -> list[dict]:
        evs = [m.json() for m in self.seen(lambda m: m.topic.endswith("/events"))]
        return [e for e in evs if kind is None or e.get("kind") == kind]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_client(broker: Broker, client_id: str, *, v5: bool = True, certs: Path | None = None,
                   cn: str | None = None, username: str | None = None, password: str | None = None) -> GridClient:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311)
    g = GridClient(c)
    c.on_message = g.on_message
    if certs is not None:
        c.tls_set(ca_certs=str(certs / "ca.crt"), certfile=str(certs / f"{cn}.crt"), keyfile=str(certs / f"{cn}.key"))
    if username is not None:
        c.username_pw_set(username, password)
    connected = threading.Event()

    def on_connect(_c: object, _u: object, _flags: object, reason: Any, _props: object) -> None:
        g.connect_reason = reason
        connected.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", broker.port, keepalive=10)
    c.loop_start()
    assert connected.wait(5), f"{client_id} could not connect to {broker.url}"
    return g


@pytest.fixture
def grid_client(mqtt_broker: Broker, request: pytest.FixtureRequest) -> Iterator[GridClient]:
    """A grid-side client on the session broker, subscribed to everything under youxu/v1/."""
    g = connect_client(mqtt_broker, f"grid-{request.node.name[:40]}-{free_port()}")
    g.subscribe("youxu/v1/#")
    yield g
    g.close()


@pytest.fixture
def grid(grid_client: GridClient) -> GridClient:
    """The grid side of a test: `grid_client` under the name the link tests use."""
    return grid_client


def response_properties(response_topic: str, correlation: bytes, expiry_s: int | None = None) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    p.ResponseTopic = response_topic
    p.CorrelationData = correlation
    if expiry_s is not None:
        p.MessageExpiryInterval = expiry_s
    return p


class TcpGate:
    """A TCP forwarder in front of a broker that a test can close (connections refused and cut)
    or turn into an MQTT 3.1.1-only broker (a CONNECT for MQTT 5 gets CONNACK 1, as old brokers do)."""

    def __init__(self, upstream_port: int, *, v311_only: bool = False) -> None:
        self.upstream_port = upstream_port
        self.v311_only = v311_only
        self.open = True
        self.refused_v5 = 0
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def close_gate(self) -> None:
        self.open = False
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def open_gate(self) -> None:
        self.open = True

    def shutdown(self) -> None:
        self._stop = True
        self.close_gate()
        self._srv.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            if not self.open:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        first = b""
        try:
            if self.v311_only:
                first = conn.recv(4096)
                # fixed header, remaining length (1+ bytes), then "\x00\x04MQTT" and the protocol level
                i = 1
                while first[i] & 0x80:
                    i += 1
                level = first[i + 1 + 6]
                if level == 5:
                    self.refused_v5 += 1
                    conn.sendall(b"\x20\x02\x00\x01")
                    conn.close()
                    return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
        except (OSError, IndexError):
            conn.close()
            return
        with self._lock:
            self._socks += [conn, up]
        if first:
            up.sendall(first)
        threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()
        self._pump(conn, up)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
async def make_link(mqtt_broker: Broker) -> Any:
    """Factory for started `MqttGridLink`s (unique site ids, manual clock, memory store by default);
    every link made is stopped at teardown."""
    import uuid

    from tests.dispatch_builders import ManualClock, site_config, utc_now
    from youxu.controller.grid.mqtt_link import MqttGridLink
    from youxu.controller.store.dispatch_store import MemoryDispatchStore

    links: list[MqttGridLink] = []

    async def make(site_id: str | None = None, *, clock: Any = None, store: Any = None, url: str | None = None,
                   start: bool = True, recorder: Any = None, **mqtt_cfg: Any) -> MqttGridLink:
        site_id = site_id or f"s{uuid.uuid4().hex[:10]}"
        cfg = site_config(site_id, url or mqtt_broker.url, **{"reconnect_max_s": 1, **mqtt_cfg})
        link = MqttGridLink(cfg, clock or ManualClock(utc_now()), store if store is not None else MemoryDispatchStore(),
                            recorder=recorder)
        links.append(link)
        if start:
            await link.start()
            deadline = time.monotonic() + 5
            while not link.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert link.connected, f"link for {site_id} did not connect to {url or mqtt_broker.url}"
        return link

    yield make
    for link in links:
        if link._tasks:
            await link.stop()
