"""The youxu MQTT topic layout (contract section 4) and broker URLs: the only place that spells them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from youxu.config.errors import UserError

TOPIC_ROOT = "youxu/v1"
SITE_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"  # one topic level: no '/', no MQTT wildcards '+' or '#'


def check_site_id(site_id: str) -> str:
    """`site_id` if it can stand as one topic level; ValueError naming the problem otherwise."""
    if not re.fullmatch(SITE_ID_PATTERN, site_id):
        raise ValueError(f"site id {site_id!r}: use letters, digits, '_', '.' and '-' only "
                         "(no '/' and no MQTT wildcards '+' or '#')")
    return site_id


@dataclass(frozen=True)
class SiteTopics:
    """The topic layout of contract section 4 for one site."""

    site_id: str

    def __post_init__(self) -> None:
        check_site_id(self.site_id)

    @property
    def prefix(self) -> str:
        return f"{TOPIC_ROOT}/{self.site_id}/"

    @property
    def dispatch(self) -> str:
        return self.prefix + "dispatch"

    @property
    def ack(self) -> str:
        return self.prefix + "dispatch/ack"

    @property
    def default(self) -> str:
        return self.prefix + "default"

    @property
    def heartbeat(self) -> str:
        return self.prefix + "heartbeat"

    @property
    def ambient(self) -> str:
        return self.prefix + "ambient"

    @property
    def status(self) -> str:
        return self.prefix + "status"

    @property
    def telemetry(self) -> str:
        return self.prefix + "telemetry"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    def pile_state(self, pile_id: str) -> str:
        return f"{self.prefix}piles/{pile_id}/state"

    def session_request(self, pile_id: str) -> str:
        return f"{self.prefix}sessions/{pile_id}/request"

    def subscriptions(self) -> list[tuple[str, int]]:
        """What the site reads: commands and default at QoS 1, heartbeats and ambient at 0, bookings at 1."""
        return [(self.prefix + "dispatch", 1), (self.prefix + "default", 1), (self.prefix + "heartbeat", 0),
                (self.prefix + "ambient", 0), (self.prefix + "sessions/+/request", 1)]


def classify_topic(topic: str) -> tuple[str, str | None, str | None]:
    """(kind, site_id, pile_id) of an incoming topic; kind is dispatch, default, heartbeat, ambient,
    session_request or other."""
    parts = topic.split("/")
    if len(parts) < 3 or "/".join(parts[:2]) != TOPIC_ROOT:
        return "other", None, None
    site, rest = parts[2], parts[3:]
    if rest in (["dispatch"], ["default"], ["heartbeat"], ["ambient"]):
        return rest[0], site, None
    if len(rest) == 3 and rest[0] == "sessions" and rest[2] == "request":
        return "session_request", site, rest[1]
    return "other", site, None


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerUrl:
    """`mqtt://[user[:password]@]host[:port]` (1883) or `mqtts://...` (8883, TLS)."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise UserError(f"mqtt url {url!r}: {exc}") from None
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise UserError(f"mqtt url {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    tls = u.scheme == "mqtts"
    return BrokerUrl(u.hostname, port or (8883 if tls else 1883), tls,
                     unquote(u.username) if u.username else None, unquote(u.password) if u.password else None)
