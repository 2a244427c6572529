"""A real `youxu run` whose devices go away and come back (the `youxu sim serve` process stopped and
started again on the same port): the device-fault and meter alarms reach the grid on the `events`
topic of a real broker (contract section 4), with QoS 1, and the daemon keeps running."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests import contract
from tests.fixtures_mqtt import Broker
from tests.site_processes import CliProcess, logs_on_failure, mosquitto_pub_binary, start_site

CONTROL = {"period_s": 1.0, "default_dwell_s": 3600.0, "default_energy_kwh": 6.5}


@pytest.fixture(scope="module")
def pub_binary() -> str:
    b = mosquitto_pub_binary()
    if b is None:
        pytest.skip("mosquitto_pub not found (apt-get install mosquitto-clients, or set MOSQUITTO_PUB=/path)")
    return b


async def ready_again(sim: CliProcess, times: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sim.log(10**7).count("youxu sim serve: ready") < times:
        assert time.monotonic() < deadline, sim.log()
        await asyncio.sleep(0.05)


async def test_devices_lost_and_back_are_events_on_the_broker(mqtt_broker: Broker, tmp_path: Path,
                                                             pub_binary: str) -> None:
    site = await start_site(tmp_path, mqtt_broker.port, f"faults-{time.monotonic_ns() % 10**9}", pub_binary, n_piles=3,
                            control=CONTROL)
    try:
        with logs_on_failure(site):
            assert site.grid is not None and site.daemon is not None
            events_topic = contract.topic(site.site_id, "events")

            async def event(kind: str) -> dict:
                got = await site.grid.until(lambda m: m.topic == events_topic and m.json().get("kind") == kind, 15.0)
                assert got[0].qos == contract.TOPICS["events"].qos
                return got[0].json()

            assert site.probe is not None
            await site.probe.until(lambda kw: kw > 115.0, 20.0, "charging above 115 kW")
            site.sim.stop()  # meter and piles gone at once
            await event("meter_lost")
            faults = await site.grid.until(lambda m: m.topic == events_topic and m.json().get("kind") == "device_fault",
                                           15.0, count=4)
            assert {f.json()["device"] for f in faults} >= {"meter", "P01", "P02", "P03"}
            for f in faults:
                e = f.json()
                assert set(e) >= {"kind", "message", "at", "device"} and e["message"].startswith(e["device"])
                assert e["at"].endswith("+08:00") and f.qos == contract.TOPICS["events"].qos
            site.sim.start()
            await ready_again(site.sim, 2)
            await event("meter_restored")
            await event("device_restored")
            assert site.daemon.running
    finally:
        await site.close()
