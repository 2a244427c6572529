"""Modbus TCP buses and device URLs: a gateway with a dead unit, a connection nobody answers on."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures_modbus import silent_device
from tests.test_device_profiles import meter_image
from youxu.drivers.meter import ModbusMeter
from youxu.drivers.profiles import load_profile
from youxu.drivers.transport import BusPool, DeviceBackedOff, DeviceTimeout, Endpoint, parse_device_url
from youxu.sim.register_image import serve_image


def test_parse_urls() -> None:
    assert parse_device_url("modbus-tcp://10.0.0.2") == Endpoint("modbus-tcp", host="10.0.0.2", port=502)
    assert parse_device_url("modbus-tcp://gw:5020?spacing_ms=10").spacing_ms == 10
    ep = parse_device_url("modbus-rtu:///dev/ttyUSB0?baud=9600&parity=E&stop=2&bits=8")
    assert (ep.device, ep.baud, ep.parity, ep.stopbits, ep.bytesize, ep.spacing_ms) == ("/dev/ttyUSB0", 9600, "E", 2,
                                                                                        8, 5.0)
    assert ep.key == "rtu:///dev/ttyUSB0"
    for url, msg in [("modbus-tcp://", "needs a host"), ("modbus-tcp://h:99999", "bad port"),
                     ("modbus-rtu://", "needs a serial device"), ("modbus-rtu:///dev/x?stop=3", "stop must be 1 or 2"),
                     ("modbus-rtu:///dev/x?bits=9", "bits must be 7 or 8"),
                     ("modbus-rtu:///dev/x?baud=0", "baud must be positive"),
                     ("modbus-tcp://h?baud=9600", "unknown option 'baud'"), ("tcp://h", "scheme must be")]:
        with pytest.raises(ValueError, match=msg):
            parse_device_url(url)


async def test_pool_shares_one_bus_per_endpoint() -> None:
    pool = BusPool()
    a = pool.get("modbus-tcp://10.0.0.2:502")
    assert pool.get("modbus-tcp://10.0.0.2") is a
    assert pool.get("modbus-tcp://10.0.0.3:502") is not a
    assert len(pool.buses()) == 2
    pool.close()


async def test_dead_unit_behind_a_gateway(modbus_servers) -> None:
    url = modbus_servers.tcp([serve_image(meter_image("sdm630"), 1), silent_device(9)])
    pool = BusPool()
    try:
        bus = pool.get(url)
        live = ModbusMeter(load_profile("sdm630"), bus, 1, 0.5)
        dead = ModbusMeter(load_profile("sdm630"), bus, 9, 0.1)
        results = []
        for _ in range(5):
            results.append(await asyncio.gather(live.read(), dead.read(), return_exceptions=True))
        assert all(r[0].power_kw == pytest.approx(3.625) for r in results)
        assert [type(r[1]) for r in results] == [DeviceTimeout] * 3 + [DeviceBackedOff] * 2
        assert bus.reconnects == 0  # the live unit answers: the connection is fine
        health = pool.health()[bus.endpoint.key]
        assert health[9].backoffs == 1 and health[1].failures == 0 and health[1].requests == 5
    finally:
        pool.close()


async def test_connection_nobody_answers_on_is_reopened(modbus_servers) -> None:
    url = modbus_servers.tcp([silent_device(1), serve_image(meter_image("sdm630"), 2)])
    pool = BusPool()
    try:
        bus = pool.get(url)
        dead = ModbusMeter(load_profile("sdm630"), bus, 1, 0.1)
        for _ in range(3):
            with pytest.raises(DeviceTimeout):
                await dead.read()
        assert bus.reconnects == 1 and not bus.connected
        live = ModbusMeter(load_profile("sdm630"), bus, 2, 0.5)
        assert (await live.read()).power_kw == pytest.approx(3.625)  # a fresh connection
        assert bus.connected
    finally:
        pool.close()
