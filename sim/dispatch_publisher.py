"""The scenario's dispatch commands published over MQTT at their times (`youxu sim serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from youxu.controller.cli.dispatch import BrokerAccess, connect
from youxu.controller.grid.dispatch_schema import format_rfc3339, parse_rfc3339, signed
from youxu.drivers.clock import Clock
from youxu.drivers.mqtt_topics import SiteTopics


def _scenario_items(entries: Any, start_s: float | None, clock: Clock) -> list[tuple[float, dict[str, Any]]]:
    if hasattr(entries, "dispatch") and hasattr(entries, "start"):  # a Scenario
        origin = entries.start.timestamp() if start_s is None else start_s
        raw: Iterable[Any] = entries.dispatch
    else:
        origin = clock.now() if start_s is None else start_s
        raw = entries
    items = []
    for e in raw:
        at_s = e["at_s"] if isinstance(e, dict) else e.at_s
        command = e["command"] if isinstance(e, dict) else e.command
        items.append((origin + float(at_s), dict(command)))
    return sorted(items, key=lambda it: it[0])


def _shifted(cmd: dict[str, Any], shift_s: float, tz: Any) -> dict[str, Any]:
    out = dict(cmd)
    for k in ("issued_at", "valid_from", "valid_until"):
        if isinstance(out.get(k), str):
            with contextlib.suppress(ValueError):  # left as it is: the site will say what is wrong with it
                out[k] = format_rfc3339(parse_rfc3339(out[k]) + shift_s, tz)
    return out


async def publish_scenario_dispatch(
    url: str, site_id: str, entries: Any, clock: Clock, stop: asyncio.Event | None = None, *,
    key: bytes | None = None, heartbeat_s: float | None = 30.0, start_s: float | None = None,
    access: BrokerAccess | None = None, issuer: str = "youxu-sim", shift_s: float = 0.0,
) -> int:
    """Publish a scenario's dispatch entries at their times on `clock`, with heartbeats between them.

    `entries` is a `Scenario` (times from its `start`) or a list of `{"at_s", "command"}` entries
    (times from `start_s`, default now). Commands are published as written; missing `command_id`,
    `issuer`, `seq` and `issued_at` are filled in, and they are signed when `key` is given. With a
    `stop` event it keeps sending heartbeats after the last entry until `stop` is set (or it is
    cancelled); without one it returns after the last entry. Returns the number of commands sent.
    `shift_s` moves every time in the commands (issued_at, valid_from, valid_until), e.g. from the
    scenario's calendar onto the wall clock of a daemon that runs in real time.
    """
    items = _scenario_items(entries, start_s, clock)
    topics = SiteTopics(site_id)
    client = await asyncio.to_thread(connect, access or BrokerAccess(url), f"youxu-sim-{uuid.uuid4().hex[:12]}")
    tz = datetime.now(UTC).astimezone().tzinfo or UTC
    next_hb = clock.now()
    sent = 0
    seq0 = int(clock.now() * 1000)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    def heartbeat_due() -> None:
        nonlocal next_hb
        if heartbeat_s and clock.now() >= next_hb:
            client.publish(topics.heartbeat, json.dumps({"at": format_rfc3339(round(clock.now(), 3), tz)}), qos=0)
            next_hb = clock.now() + heartbeat_s

    try:
        for i, (t_s, cmd) in enumerate(items):
            while clock.now() < t_s and not stopped():
                heartbeat_due()
                await asyncio.sleep(0.02)
            if stopped():
                return sent
            if shift_s:
                cmd = _shifted(cmd, shift_s, tz)
            cmd.setdefault("command_id", str(uuid.uuid4()))
            cmd.setdefault("issuer", issuer)
            cmd.setdefault("seq", seq0 + i)
            cmd.setdefault("issued_at", format_rfc3339(round(clock.now(), 3), tz))
            if key is not None:
                cmd = signed(cmd, key)
            info = client.publish(topics.dispatch, json.dumps(cmd), qos=1)
            await asyncio.to_thread(info.wait_for_publish, 10)
            sent += 1
        while stop is not None and not stop.is_set():
            heartbeat_due()
            await asyncio.sleep(0.05)
        return sent
    finally:
        client.disconnect()
        client.loop_stop()
