"""Modbus RTU: several devices on one virtual RS-485 line (socat pty pair) through `BusPool`:
one request at a time in fair order, spacing between requests, per-device timeouts, a dead
unit backed off without holding up the others, a late answer not mistaken for another's."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.framer import FramerRTU

from tests.fixtures_modbus import silent_device, slow_device
from tests.test_device_profiles import METER_EXPECTED, PILE_CASES, meter_image, pile_image
from youxu.controller.cli import main
from youxu.drivers.meter import ModbusMeter
from youxu.drivers.pile import ModbusPile
from youxu.drivers.profiles import load_profile
from youxu.drivers.transport import BusPool, DeviceBackedOff, DeviceTimeout
from youxu.sim.register_image import serve_image

BAUD = 38400


class Line:
    """A virtual RS-485 line with a meter (1), two piles (2, 3), a KEBA-style pile polled in
    five requests (6), a dead unit (4) and a pile that takes 60 ms to answer (7)."""

    def __init__(self, servers, tty: str) -> None:
        self.tty = tty
        self.order: list[int] = []
        self.times: list[float] = []
        self.writes: dict[int, list] = {2: [], 3: []}
        self.meter = meter_image("dtsu666")
        self.sim = pile_image(PILE_CASES["youxu-sim-pile"])
        self.abb = pile_image(PILE_CASES["abb-terra-ac"])
        self.keba = pile_image(PILE_CASES["keba-p30"])
        servers.rtu([
            serve_image(self.meter, 1, on_read=self.seen(1)),
            serve_image(self.sim, 2, on_read=self.seen(2), write_log=self.writes[2]),
            serve_image(self.abb, 3, on_read=self.seen(3), write_log=self.writes[3]),
            silent_device(4),
            slow_device(7, 0.06, serve_image(pile_image(PILE_CASES["youxu-sim-pile"]), 7)),
            serve_image(self.keba, 6, on_read=self.seen(6)),
        ], tty, BAUD)

    def seen(self, unit: int):
        def hook() -> None:
            self.order.append(unit)
            self.times.append(time.monotonic())
        return hook


@pytest.fixture
def line(modbus_servers, serial_pair) -> tuple[Line, str]:
    device_tty, youxu_tty = serial_pair
    return Line(modbus_servers, device_tty), youxu_tty


def url(tty: str, spacing_ms: float = 2) -> str:
    return f"modbus-rtu://{tty}?baud={BAUD}&parity=N&stop=1&spacing_ms={spacing_ms:g}"


async def test_three_devices_read_and_write(line) -> None:
    ln, tty = line
    pool = BusPool()
    try:
        bus = pool.get(url(tty), 0.5)
        assert pool.get(url(tty), 0.5) is bus  # one bus per serial line
        meter = ModbusMeter(load_profile("dtsu666"), bus, 1, 0.5)
        sim = ModbusPile(load_profile("youxu-sim-pile"), bus, 2, timeout_s=0.5)
        abb = ModbusPile(load_profile("abb-terra-ac"), bus, 3, timeout_s=0.5)
        for _ in range(3):  # three ticks, everything polled together
            m, p2, p3 = await asyncio.gather(meter.read(), sim.read(), abb.read())
            assert m.as_contract("dtsu666") == {"profile": "dtsu666", **METER_EXPECTED}
            assert p2.as_contract("youxu-sim-pile") == {"profile": "youxu-sim-pile",
                                                        **PILE_CASES["youxu-sim-pile"].expected}
            assert p3.as_contract("abb-terra-ac") == {"profile": "abb-terra-ac", **PILE_CASES["abb-terra-ac"].expected}
        await asyncio.gather(sim.write_setpoint_kw(3.68), abb.write_current_a(10))
        assert ln.writes[2] == [(16, 5, [0, 3680])]
        assert ln.writes[3] == [(16, 0x4100, [0, 10000])]
        p2, p3 = await asyncio.gather(sim.read(), abb.read())
        assert p2.setpoint_kw == pytest.approx(3.68) and p3.setpoint_a == pytest.approx(10.0)
        assert bus.failures == 0 and bus.requests == 3 * 4 + 2 + 2
    finally:
        pool.close()


async def test_fair_order_per_tick(line) -> None:
    ln, tty = line
    pool = BusPool()
    try:
        bus = pool.get(url(tty), 0.5)
        keba = ModbusPile(load_profile("keba-p30"), bus, 6, timeout_s=0.5)  # five requests per poll
        meter = ModbusMeter(load_profile("dtsu666"), bus, 1, 0.5)  # two
        sim = ModbusPile(load_profile("youxu-sim-pile"), bus, 2, timeout_s=0.5)  # one
        await asyncio.gather(keba.read(), meter.read(), sim.read())
        # requests take turns: the many-block device does not hold the line for its whole poll
        assert ln.order == [6, 1, 2, 6, 1, 6, 6, 6]
    finally:
        pool.close()


async def test_spacing_between_requests(line) -> None:
    ln, tty = line
    pool = BusPool()
    try:
        bus = pool.get(url(tty, spacing_ms=40), 0.5)
        sim = ModbusPile(load_profile("youxu-sim-pile"), bus, 2, timeout_s=0.5)
        abb = ModbusPile(load_profile("abb-terra-ac"), bus, 3, timeout_s=0.5)
        for _ in range(3):
            await asyncio.gather(sim.read(), abb.read())
        gaps = [b - a for a, b in zip(ln.times, ln.times[1:], strict=False)]
        assert len(gaps) == 5 and min(gaps) >= 0.038
    finally:
        pool.close()


async def test_dead_unit_is_backed_off_without_blocking(line) -> None:
    ln, tty = line
    pool = BusPool()
    try:
        bus = pool.get(url(tty), 0.5)
        dead = ModbusMeter(load_profile("sdm630"), bus, 4, 0.15)
        sim = ModbusPile(load_profile("youxu-sim-pile"), bus, 2, timeout_s=0.5)
        durations = []
        for tick in range(5):
            t0 = time.monotonic()
            r_dead, r_sim = await asyncio.gather(dead.read(), sim.read(), return_exceptions=True)
            durations.append(time.monotonic() - t0)
            assert r_sim.power_kw == pytest.approx(7.36)  # the live pile is read every tick
            expected = DeviceTimeout if tick < bus.failures_before_backoff else DeviceBackedOff
            assert type(r_dead) is expected, (tick, r_dead)
        assert min(durations[:3]) >= 0.15  # the dead unit cost its timeout while it was asked
        assert max(durations[3:]) < 0.1  # backed off: not asked, the tick is quick
        h = bus.health()[4]
        assert h.backoffs == 1 and h.timeouts == 3 and h.consecutive_failures == 3
        assert bus.backed_off_units() == [4]
        assert "timeout after 0.15 s" in h.last_error
        assert bus.health()[2].failures == 0
        assert 4 not in ln.order  # the silent unit's requests never reach our hooks
    finally:
        pool.close()


async def test_backed_off_unit_is_probed_again_and_recovers(line) -> None:
    _, tty = line
    pool = BusPool()
    try:
        bus = pool.get(url(tty), 0.5)
        bus.backoff_min_s = 0.3
        dead = ModbusMeter(load_profile("dtsu666"), bus, 4, 0.1)
        for _ in range(3):
            with pytest.raises(DeviceTimeout):
                await dead.read()
        with pytest.raises(DeviceBackedOff):
            await dead.read()
        await asyncio.sleep(0.35)
        with pytest.raises(DeviceTimeout):  # probed once more: still dead, longer back-off
            await dead.read()
        assert bus.health()[4].backoff_s == pytest.approx(0.6)
        # the same unit id answering again (device repaired) clears the back-off
        revived = ModbusMeter(load_profile("dtsu666"), bus, 1, 0.3)
        assert (await revived.read()).power_kw == pytest.approx(3.625)
        assert bus.backed_off_units() == [4]
    finally:
        pool.close()


def rtu_frame(unit: int, fc: int, registers: list[int]) -> bytes:
    """A read response as a device puts it on the line: unit, fc, byte count, data, CRC."""
    body = bytes([unit, fc, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


async def test_late_answer_is_not_taken_for_another_device(line) -> None:
    ln, tty = line
    # what unit 5 would have said had it answered after its timeout: 99 kW at the power register
    stale = rtu_frame(5, 3, [2, 1, 0x82B8, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    pool = BusPool()
    try:
        bus = pool.get(url(tty), 0.5)
        pile = ModbusPile(load_profile("youxu-sim-pile"), bus, 7, timeout_s=0.5)

        async def late_answer_on_the_line() -> None:
            await asyncio.sleep(0.02)  # unit 7 is still thinking
            with open(ln.tty, "wb", buffering=0) as f:
                f.write(stale)

        for _ in range(3):
            reading, _ = await asyncio.gather(pile.read(), late_answer_on_the_line())
            assert reading.power_kw == pytest.approx(7.36)
        assert bus.failures == 0
    finally:
        pool.close()


def test_device_read_over_rtu(line, capsys: pytest.CaptureFixture) -> None:
    _, tty = line
    assert main(["device", "read", "--profile", "dtsu666", "--url", url(tty), "--unit", "1", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out) == {"profile": "dtsu666", **METER_EXPECTED}
