"""MQTT transport for the grid link: topics, broker URL, TLS, paho-mqtt 2.x in its own thread.

- paho runs its network loop in its own thread (`loop_start`): it connects, reconnects with
  exponential backoff and re-subscribes on every CONNACK. Sessions are persistent (MQTT 5
  `clean_start=False` with a session expiry, 3.1.1 `clean_session=False`) with a stable client id,
  so QoS 1 commands published while the site was briefly away are delivered when it is back.
- Incoming messages are handed to `on_message` (the grid link puts them on its asyncio queue);
  QoS 1 messages are acknowledged to the broker only when the link calls `ack` after handling them.
- Publishing never blocks: messages go into queues that a publisher thread feeds to paho while
  connected. Acks and events (`reliable`) are never dropped; telemetry is a bounded queue that
  drops its oldest entry when the broker is slow (counted); retained state keeps the latest per topic.
- `protocol: auto` tries MQTT 5 and falls back to 3.1.1 when the broker refuses the version.

Topics and broker URLs are in `youxu.drivers.mqtt_topics`. `MqttGridLink` (the `GridLink` the daemon
uses) lives in `youxu.controller.grid.mqtt_link` and is importable from here.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from youxu.config.errors import UserError
from youxu.drivers.clock import Clock
from youxu.drivers.mqtt_topics import TOPIC_ROOT, BrokerUrl, SiteTopics, classify_topic, parse_broker_url

log = logging.getLogger(__name__)

UNSUPPORTED_PROTOCOL = (132, 1)  # MQTT 5 reason code / 3.1.1 CONNACK return code


__all__ = ["TOPIC_ROOT", "BrokerUrl", "Inbound", "MqttConnection", "MqttSettings", "Outbound", "SiteTopics",
           "classify_topic", "parse_broker_url"]


# ---- settings -----------------------------------------------------------------------------
def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"{what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class MqttSettings:
    url: str
    client_id: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    protocol: Literal["5", "3.1.1", "auto"] = "auto"
    keepalive_s: int = 30
    session_expiry_s: int = 3600
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    telemetry_queue: int = 64  # telemetry messages held while the broker is slow (oldest dropped)
    telemetry_window: int = 4  # telemetry messages handed to paho and not yet written

    @staticmethod
    def from_section(m: Any, site_id: str) -> MqttSettings:
        """From the site config's `mqtt:` section (`youxu.controller.siteconfig.MqttSection`)."""
        url = parse_broker_url(m.url)
        password = _read_secret(m.password_file, "mqtt.password_file") if m.password_file else url.password
        return MqttSettings(
            url=m.url, client_id=m.client_id or f"youxu-{site_id}", username=m.username or url.username,
            password=password, ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file,
            protocol=m.protocol, keepalive_s=int(getattr(m, "keepalive_s", 30)),
            session_expiry_s=int(getattr(m, "session_expiry_s", 3600)),
            reconnect_max_s=int(getattr(m, "reconnect_max_s", 30)),
        )


def tls_context(s: MqttSettings) -> ssl.SSLContext:
    """Server verification with the CA file (or the system's), client certificate when given."""
    try:
        ctx = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if s.cert_file is not None:
            ctx.load_cert_chain(str(s.cert_file), str(s.key_file) if s.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"mqtt TLS files (ca {s.ca_file}, cert {s.cert_file}, key {s.key_file}): {exc}") from None
    return ctx


# ---- messages ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    received_s: float
    generation: int  # which connection delivered it (acks go only to that one)
    response_topic: str | None = None
    correlation_data: bytes | None = None
    expiry_s: int | None = None  # MQTT 5 message expiry interval left when it arrived


@dataclass(frozen=True)
class Outbound:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    correlation_data: bytes | None = None
    expiry_s: int | None = None


@dataclass
class LinkStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    telemetry_dropped: int = 0
    received: int = 0
    protocol: str = ""
    last_error: str = ""


@dataclass
class _Queues:
    reliable: deque[Outbound] = field(default_factory=deque)
    telemetry: deque[Outbound] = field(default_factory=deque)
    state: dict[str, Outbound] = field(default_factory=dict)


class MqttConnection:
    """One broker connection (with its reconnects) and the queues in front of it."""

    def __init__(
        self,
        settings: MqttSettings,
        subscriptions: list[tuple[str, int]],
        clock: Clock,
        *,
        on_message: Callable[[Inbound], None],
        will: Outbound | None = None,
        birth: Callable[[], Outbound | None] | None = None,
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self.url = parse_broker_url(settings.url)
        self.subscriptions = subscriptions
        self.clock = clock
        self.on_message = on_message
        self.will = will
        self.birth = birth
        self.on_connection = on_connection
        self.stats = LinkStats()
        self._ssl = tls_context(settings) if self.url.tls else None
        self._protocol = MQTTProtocolVersion.MQTTv311 if settings.protocol == "3.1.1" else MQTTProtocolVersion.MQTTv5
        self._cond = threading.Condition()
        self._q = _Queues()
        self._tele_inflight: list[mqtt.MQTTMessageInfo] = []
        self._connected = False
        self._generation = 0
        self._stopping = False
        self._downgrade = False
        self._client: mqtt.Client | None = None
        self._publisher: threading.Thread | None = None

    # ---- state ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def protocol(self) -> str:
        return "5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"

    def queued(self) -> int:
        with self._cond:
            return len(self._q.reliable) + len(self._q.telemetry) + len(self._q.state)

    # ---- paho client ---------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=self._protocol,
            clean_session=None if v5 else False, manual_ack=True,
        )
        c.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        c.max_queued_messages_set(0)
        if s.username is not None:
            c.username_pw_set(s.username, s.password)
        if self._ssl is not None:
            c.tls_set_context(self._ssl)
        if self.will is not None:
            c.will_set(self.will.topic, self.will.payload, qos=self.will.qos, retain=self.will.retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    def _connect(self) -> None:
        c = self._make_client()
        self._client = c
        kwargs: dict[str, Any] = {}
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        self.stats.protocol = self.protocol
        c.connect_async(self.url.host, self.url.port, keepalive=self.settings.keepalive_s, **kwargs)
        c.loop_start()

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start publishing."""
        self._stopping = False
        self._connect()
        self._publisher = threading.Thread(target=self._publish_loop, name="youxu-mqtt-out", daemon=True)
        self._publisher.start()

    def stop(self, final: Outbound | None = None, flush_s: float = 2.0) -> None:
        """Flush reliable messages (up to `flush_s`), publish `final` (e.g. status offline), disconnect."""
        with self._cond:
            deadline = self.clock_monotonic() + flush_s
            while self._connected and self._q.reliable and self.clock_monotonic() < deadline:
                self._cond.wait(0.05)
            self._stopping = True
            self._cond.notify_all()
        if self._publisher is not None:
            self._publisher.join(timeout=flush_s + 1)
        c = self._client
        if c is None:
            return
        if final is not None and self._connected:
            info = c.publish(final.topic, final.payload, qos=final.qos, retain=final.retain)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=flush_s)
        c.disconnect()
        c.loop_stop()
        self._connected = False

    @staticmethod
    def clock_monotonic() -> float:
        return time.monotonic()  # real time for network timeouts, never for control logic

    # ---- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _ud: object, flags: Any, reason: Any, _props: Any) -> None:
        if client is not self._client:
            return
        if reason.is_failure:
            self.stats.last_error = f"connect refused: {reason}"
            log.warning("MQTT broker %s:%d refused the connection: %s", self.url.host, self.url.port, reason)
            if (self.settings.protocol == "auto" and self._protocol == MQTTProtocolVersion.MQTTv5
                    and reason.value in UNSUPPORTED_PROTOCOL):
                with self._cond:
                    self._downgrade = True
                    self._cond.notify_all()
            return
        for topic, qos in self.subscriptions:
            client.subscribe(topic, qos)
        birth = self.birth() if self.birth else None
        if birth is not None:
            client.publish(birth.topic, birth.payload, qos=birth.qos, retain=birth.retain)
        with self._cond:
            self._connected = True
            self._generation += 1
            self._tele_inflight.clear()
            self._cond.notify_all()
        self.stats.connects += 1
        log.info("MQTT connected to %s:%d (v%s, session present: %s)", self.url.host, self.url.port,
                 self.protocol, getattr(flags, "session_present", None))
        if self.on_connection:
            self.on_connection(True)

    def _on_disconnect(self, client: mqtt.Client, _ud: object, _flags: Any, reason: Any, _props: Any) -> None:
        if client is not self._client:
            return
        was = self._connected
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        if was:
            self.stats.disconnects += 1
            self.stats.last_error = f"disconnected: {reason}"
            if not self._stopping:
                log.warning("MQTT connection to %s:%d lost (%s); reconnecting", self.url.host, self.url.port, reason)
            if self.on_connection:
                self.on_connection(False)

    def _on_message(self, client: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        inbound = Inbound(
            topic=msg.topic, payload=bytes(msg.payload), qos=msg.qos, retain=bool(msg.retain), mid=msg.mid,
            received_s=self.clock.now(), generation=self._generation,
            response_topic=getattr(props, "ResponseTopic", None) if props is not None else None,
            correlation_data=bytes(corr) if corr is not None else None,
            expiry_s=getattr(props, "MessageExpiryInterval", None) if props is not None else None,
        )
        self.stats.received += 1
        try:
            self.on_message(inbound)
        except Exception:  # never let a handler problem kill paho's thread
            log.exception("MQTT message on %s could not be handed over", msg.topic)
            self.ack(inbound)

    def _on_publish(self, *_args: Any) -> None:
        with self._cond:
            self._cond.notify_all()

    def ack(self, inbound: Inbound) -> None:
        """Acknowledge a QoS 1 message to the broker (after it was handled)."""
        c = self._client
        if inbound.qos > 0 and c is not None and inbound.generation == self._generation and self._connected:
            c.ack(inbound.mid, inbound.qos)

    # ---- publishing ----------------------------------------------------------------------
    def publish(self, msg: Outbound, kind: Literal["reliable", "telemetry", "state"] = "reliable") -> None:
        """Queue a message; never blocks. `telemetry` may be dropped (oldest first) when the broker is slow."""
        with self._cond:
            if kind == "reliable":
                self._q.reliable.append(msg)
            elif kind == "state":
                self._q.state[msg.topic] = msg
            else:
                if len(self._q.telemetry) >= self.settings.telemetry_queue:
                    self._q.telemetry.popleft()
                    self.stats.telemetry_dropped += 1
                self._q.telemetry.append(msg)
            self._cond.notify_all()

    def _next(self) -> Outbound | None:
        """The next message to hand to paho (called with the lock held)."""
        if self._q.reliable:
            return self._q.reliable.popleft()
        self._tele_inflight = [i for i in self._tele_inflight if not i.is_published()]
        if len(self._tele_inflight) >= self.settings.telemetry_window:
            return None
        if self._q.state:
            topic = next(iter(self._q.state))
            return self._q.state.pop(topic)
        if self._q.telemetry:
            return self._q.telemetry.popleft()
        return None

    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                msg = None
                while not self._stopping:
                    if self._downgrade:
                        break
                    if self._connected:
                        msg = self._next()
                        if msg is not None:
                            break
                    self._cond.wait(0.2)
                if self._stopping:
                    return
                downgrade, self._downgrade = self._downgrade, False
            if downgrade:
                self._fall_back_to_311()
                continue
            if msg is not None:
                self._send(msg)

    def _send(self, msg: Outbound) -> None:
        c = self._client
        assert c is not None
        props = None
        if self._protocol == MQTTProtocolVersion.MQTTv5 and (msg.correlation_data is not None or msg.expiry_s):
            props = Properties(PacketTypes.PUBLISH)
            if msg.correlation_data is not None:
                props.CorrelationData = msg.correlation_data
            if msg.expiry_s:
                props.MessageExpiryInterval = msg.expiry_s
        info = c.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, properties=props)
        # QoS 1 while the connection just dropped (NO_CONN): paho keeps it and sends it on reconnect
        if msg.qos > 0 and info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            with self._cond:  # paho refused it: keep it for the next attempt
                self._q.reliable.appendleft(msg)
                self._cond.wait(0.2)
            return
        self.stats.published += 1
        if msg.qos == 0:
            with self._cond:
                self._tele_inflight.append(info)

    def _fall_back_to_311(self) -> None:
        log.warning("MQTT broker %s:%d does not speak MQTT 5; falling back to 3.1.1", self.url.host, self.url.port)
        old = self._client
        self._protocol = MQTTProtocolVersion.MQTTv311
        if old is not None:
            old.disconnect()
            old.loop_stop()
        self._connect()

