"""Telemetry that tells the truth, on time: one message per telemetry period on jittered ticks,
stale values marked instead of repeated, unreachable piles not counted idle, the tightest limit."""

from __future__ import annotations

import asyncio
import random

from tests.dispatch_builders import report
from tests.fixtures_mqtt import GridClient
from youxu.controller.grid.cadence import Cadence


def topic(link: object, name: str) -> str:
    return f"youxu/v1/{link.site_id}/{name}"  # type: ignore[attr-defined]


async def online(g: GridClient, link: object) -> None:
    await g.until(lambda m: m.topic == topic(link, "status") and m.json()["state"] == "online")


async def test_one_telemetry_message_per_period_on_jittered_ticks(make_link, grid: GridClient) -> None:
    """1 s telemetry on 1 s ticks that come up to 50 ms early or 150 ms late: 104 ticks, 104 messages
    (comparing the time since the last message with the period sent about two in three)."""
    link = await make_link(telemetry_period_s=1.0)
    await online(grid, link)
    t0 = link.clock.now()
    rnd = random.Random(8)
    n_ticks = 104
    for k in range(n_ticks):
        link.after_tick(report(t0 + k + rnd.uniform(-0.05, 0.15), 300.0, 40.0))
        await asyncio.sleep(0.005)  # the link's telemetry queue is bounded: ticks come at their own pace
    assert await sent(link, grid) == n_ticks


async def sent(link: object, grid: GridClient) -> int:
    """Telemetry messages the link sent: those the grid got, and any its bounded queue dropped."""
    seen = 0
    for _ in range(100):
        seen = len(grid.seen(lambda m: m.topic == topic(link, "telemetry")))
        if link.conn.queued() == 0:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    seen = len(grid.seen(lambda m: m.topic == topic(link, "telemetry")))
    return seen + link.conn.stats.telemetry_dropped  # type: ignore[attr-defined]


async def test_telemetry_every_ten_seconds_on_one_second_ticks(make_link, grid: GridClient) -> None:
    link = await make_link(telemetry_period_s=10.0)
    await online(grid, link)
    t0 = link.clock.now()
    rnd = random.Random(3)
    for k in range(101):
        link.after_tick(report(t0 + k + rnd.uniform(-0.05, 0.15), 300.0, 40.0))
        await asyncio.sleep(0.005)
    assert await sent(link, grid) == 11


def test_cadence_keeps_its_grid_after_gaps_and_restarts_it_after_a_clock_step_back() -> None:
    c = Cadence(1.0, 0.5)
    assert [c.due(t) for t in (100.0, 101.02, 101.98, 102.3)] == [True, True, True, False]
    assert c.due(106.2)  # four periods without a tick: one message, no burst
    assert c.next_s == 107.0 and not c.due(106.4) and c.due(107.1)
    assert c.due(50.0) and c.next_s == 51.0  # the wall clock stepped back: a new grid
    assert not c.due(50.3) and c.due(50.9)
