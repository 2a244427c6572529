"""Telemetry that tells the truth, on time: one message per telemetry period on jittered ticks,
stale values marked instead of repeated, unreachable piles not counted idle, the tightest limit."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import pytest

from tests.dispatch_builders import command, report
from tests.fixtures_mqtt import Broker, GridClient
from tests.site_processes import RunningSite, logs_on_failure, mosquitto_pub_binary, start_site
from youxu.controller.grid.cadence import Cadence
from youxu.controller.grid.dispatch_schema import parse_rfc3339
from youxu.controller.grid.payloads import pile_counts, telemetry_payload
from youxu.controller.grid.site_alarms import AlarmWatch


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


# ---- devices gone: the real daemon against simulated devices over Modbus TCP ------------------------------
T0 = 1_782_900_000.0
BASE_KW = 100.0  # the scenario's households
N_PILES = 6
DISPATCH_KW = 120.0  # a site limit well under the transformer's 150 kW


@pytest.fixture(scope="module")
def pub_binary() -> str:
    b = mosquitto_pub_binary()
    if b is None:
        pytest.skip("mosquitto_pub not found (apt-get install mosquitto-clients, or set MOSQUITTO_PUB=/path)")
    return b


@pytest.fixture
async def site(mqtt_broker: Broker, tmp_path: Path, pub_binary: str) -> AsyncIterator[RunningSite]:
    s = await start_site(tmp_path, mqtt_broker.port, f"stale-{time.monotonic_ns() % 10**9}", pub_binary,
                         n_piles=N_PILES, base_kw=BASE_KW,
                         control={"period_s": 1.0, "default_dwell_s": 3600.0, "default_energy_kwh": 6.5,
                                  "meter_grace_s": 3.0},
                         mqtt_cfg={"telemetry_period_s": 1.0})
    yield s
    await s.close()


async def test_devices_gone_telemetry_marks_stale_values_and_counts_piles_unreachable(site: RunningSite) -> None:
    """Every device stops answering (the simulator is stopped): telemetry has no measured total, no
    EV sum and no pile idle any more; the pile states say unknown; the safe limit the meter guard
    announces is under the dispatch limit in force, which telemetry keeps reporting."""
    g = site.grid
    assert g is not None and site.probe is not None
    with logs_on_failure(site):
        await site.probe.until(lambda kw: kw > BASE_KW + 10.0, 20.0, "charging")
        cmd = command(time.time(), import_max_kw=DISPATCH_KW, minutes=10)
        await site.publish("dispatch", cmd)
        await g.until_ack(cmd["command_id"], "applied", 10.0)
        tele = site.topic("telemetry")
        live = (await g.until(lambda m: m.topic == tele and m.json()["total_kw"] is not None))[-1].json()
        assert live["stale"] == [] and live["piles"]["unreachable"] == 0

        site.sim.stop()  # the meter and every pile gone at once
        t_gone = time.time()
        faults = await g.until(lambda m: m.topic.endswith("/events") and m.json().get("kind") == "device_fault",
                               timeout_s=15.0, count=N_PILES + 1)
        assert {m.json()["device"] for m in faults} == {"meter", *(f"P{i + 1:02d}" for i in range(N_PILES))}
        safe = await g.until_event("meter_safe_limit", timeout_s=15.0)
        assert safe["ev_limit_kw"] <= DISPATCH_KW - safe["assumed_base_kw"]  # not the transformer's 150 kW
        assert safe["limit_kw"] == pytest.approx(DISPATCH_KW)

        t_safe = parse_rfc3339(safe["at"])
        later = await g.until(lambda m: m.topic == tele and parse_rfc3339(m.json()["at"]) > t_safe, timeout_s=10.0,
                              count=3)
        for m in later:
            t = m.json()
            assert (t["total_kw"], t["base_kw"], t["ev_kw"]) == (None, None, None), t
            assert t["phase_kw"] == {"L1": None, "L2": None, "L3": None}
            assert set(t["stale"]) == {"total_kw", "base_kw", "ev_kw", "phase_kw"}
            assert t["piles"] == {"charging": 0, "idle": 0, "faulted": N_PILES, "unreachable": N_PILES}
            assert t["limit_kw"] == pytest.approx(DISPATCH_KW)
        states = {}
        for m in g.seen(lambda m: "/piles/" in m.topic and parse_rfc3339(m.json()["at"]) >= t_gone):
            states[m.json()["pile_id"]] = m.json()
        assert len(states) == N_PILES
        assert all((s["status"], s["power_kw"], s["stale"]) == ("unknown", None, True) for s in states.values())


def test_an_assumed_site_load_raises_and_clears_no_overload() -> None:
    watch = AlarmWatch()
    assert [a.kind for a in watch.observe(replace(report(T0, 200.0, 0.0, limit_kw=120.0), meter_ok=False))] == []
    assert [a.kind for a in watch.observe(report(T0 + 1, 200.0, 0.0, limit_kw=120.0))] == ["overload"]
    assert [a.kind for a in watch.observe(replace(report(T0 + 2, 100.0, 0.0, limit_kw=120.0), meter_ok=False))] == []
    assert [a.kind for a in watch.observe(report(T0 + 3, 100.0, 0.0, limit_kw=120.0))] == ["overload_cleared"]


def test_pile_counts_and_stale_fields_from_a_report() -> None:
    r = replace(report(T0, 300.0, 7.0, pile_status={"P1": "charging", "P2": "available", "P3": "fault",
                                                    "P4": "charging"}), unreachable_piles=("P4",))
    assert pile_counts(r) == {"charging": 1, "idle": 1, "faulted": 2, "unreachable": 1}
    t = telemetry_payload(r, [], UTC)
    assert (t["total_kw"], t["base_kw"], t["ev_kw"], t["stale"]) == (300.0, None, None, ["base_kw", "ev_kw"])
