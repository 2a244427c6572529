"""Pile failsafe: programmed at start-up, kept alive while youxu runs, and the pile falls back
to its safe current after its timeout once the keep-alives stop."""

from __future__ import annotations

import asyncio
import struct

import pytest

from tests.fixtures_modbus import FailsafePileModel, FastClock, free_tcp_port
from tests.test_device_profiles import PILE_CASES, pile_image
from youxu.controller.site_checks import failsafe_warnings
from youxu.controller.siteconfig import SiteConfig, parse_site_config
from youxu.drivers.failsafe import FailsafeKeeper, fallback_active
from youxu.drivers.pile import ModbusPile
from youxu.drivers.profiles import load_profile
from youxu.drivers.transport import BusPool
from youxu.sim.register_image import serve_image


class ManualClock:
    def __init__(self, t: float = 1_782_900_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep_until(self, t_s: float) -> None:
        self.t = max(self.t, t_s)
        await asyncio.sleep(0)


def f32(x: float) -> list[int]:
    b = struct.pack(">f", x)
    return [int.from_bytes(b[:2], "big"), int.from_bytes(b[2:], "big")]


async def test_pile_falls_back_after_youxu_stops(modbus_servers) -> None:
    clock = FastClock(speed=40.0)  # the pile's 30 s timeout passes in 0.75 s
    model = FailsafePileModel(clock)
    url = modbus_servers.tcp([model.device(1)])
    pool = BusPool()
    try:
        pile = ModbusPile(load_profile("youxu-sim-pile"), pool.get(url), 1, voltage_v=230, n_phases=1)
        keeper = FailsafeKeeper(clock)
        st = await keeper.program(pile, 1.38, "P001")  # failsafe_a 6 A at 230 V
        assert st.programmed and st.warnings == []
        assert model.writes == [(16, 12, [14]), (16, 13, [30])]  # 1.4 kW in 0.1 kW, 30 s
        assert st.safe_kw_read == pytest.approx(1.4) and st.timeout_s == 30
        await pile.write_setpoint_kw(7.0)

        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        await asyncio.sleep(1.2)  # 48 s of pile time: longer than its timeout
        assert (await pile.read()).power_kw == pytest.approx(7.0)  # kept alive
        keepalives = [w for w in model.writes if w[1] == 14]
        assert len(keepalives) >= 3 and all(w == (16, 14, [1]) for w in keepalives)
        assert not model.fallen_back

        stop.set()
        await asyncio.wait_for(task, 1.0)
        assert (await pile.read()).power_kw == pytest.approx(7.0)  # the last write still holds...
        await asyncio.sleep(30 / clock.speed + 0.3)
        assert model.fallen_back
        reading = await pile.read()  # ...until the timeout: then the failsafe power
        assert reading.power_kw == pytest.approx(1.4)
        assert reading.status == "charging"
    finally:
        pool.close()


# profile -> (program writes, keep-alive writes after `write_current_a(16)`)
KEEPALIVE_CASES = {
    "vestel-evc04": ([(6, 2000, [8]), (6, 2002, [60])], [(6, 6000, [1])]),
    "keba-p30": ([(6, 5016, [8000]), (6, 5018, [60])], [(6, 5018, [60])]),
    "abb-terra-ac": ([(6, 0x4109, [8]), (6, 0x4106, [60])], []),  # keep-alive is a read
    "alfen-ng9xx": ([], [(16, 1210, f32(16.0))]),  # safe current is read only; the setpoint is rewritten
    "youxu-sim-pile": ([(16, 12, [18]), (16, 13, [30])], [(16, 14, [1])]),
    "phoenix-charx": ([], []),  # no failsafe registers
}


@pytest.mark.parametrize("name", list(KEEPALIVE_CASES))
async def test_program_and_keepalive(name: str, modbus_servers) -> None:
    case = PILE_CASES[name]
    img = pile_image(case)
    if name == "alfen-ng9xx":
        img.set("failsafe_current", 16.0)  # set in the Alfen installer, above the site's 8 A
    writes: list = []
    reads: list = []
    url = modbus_servers.tcp([serve_image(img, case.served_unit, write_log=writes, on_read=lambda: reads.append(1))])
    program_writes, keepalive_writes = KEEPALIVE_CASES[name]
    clock = ManualClock()
    pool = BusPool()
    try:
        pile = ModbusPile(load_profile(name), pool.get(url), case.unit, voltage_v=230, n_phases=1)
        keeper = FailsafeKeeper(clock)
        st = await keeper.program(pile, pile.a_to_kw(8.0), name)
        assert writes == program_writes
        if name == "phoenix-charx":
            assert st.warnings and "no failsafe registers" in st.warnings[0]
            assert await keeper.tick() is None
            return
        assert st.programmed
        assert st.safe_a == pytest.approx(16.0 if name == "alfen-ng9xx" else 8.0, abs=0.2)
        if name == "alfen-ng9xx":
            assert len(st.warnings) == 1 and "safe current is 16.0 A, above the site's failsafe 8.0 A" in st.warnings[0]
        else:
            assert st.warnings == []

        await pile.write_current_a(16)
        writes.clear()
        assert await keeper.tick() == st.next_due_s  # nothing due yet
        assert writes == []
        n_reads = len(reads)
        clock.t = st.next_due_s
        await keeper.tick()
        assert writes == keepalive_writes
        assert st.keepalives == 1 and st.failures == 0
        if name == "abb-terra-ac":
            assert len(reads) == n_reads + 1
    finally:
        pool.close()


async def test_stale_control_loop_stops_keepalives(modbus_servers) -> None:
    clock = ManualClock()
    model = FailsafePileModel(FastClock())
    url = modbus_servers.tcp([model.device(1)])
    pool = BusPool()
    try:
        pile = ModbusPile(load_profile("youxu-sim-pile"), pool.get(url), 1)
        keeper = FailsafeKeeper(clock, stale_s=5.0)
        st = await keeper.program(pile, 1.4, "P001")
        keeper.feed()
        model.writes.clear()
        clock.t += 10.0  # keep-alive due, but the loop has been silent for 10 s
        await keeper.tick()
        assert model.writes == [] and st.keepalives == 0
        clock.t += 10.0
        keeper.feed()  # the loop ticks again
        await keeper.tick()
        assert model.writes == [(16, 14, [1])]
    finally:
        pool.close()


async def test_pile_offline_at_start_is_programmed_later(modbus_servers) -> None:
    port = free_tcp_port()
    clock = ManualClock()
    pool = BusPool()
    try:
        bus = pool.get(f"modbus-tcp://127.0.0.1:{port}")
        bus.reconnect_s = 0.0
        pile = ModbusPile(load_profile("vestel-evc04"), bus, 255, timeout_s=0.3)
        keeper = FailsafeKeeper(clock)
        st = await keeper.program(pile, pile.a_to_kw(6), "P007")
        assert not st.programmed and "failsafe not programmed" in st.warnings[0]

        writes: list = []
        img = pile_image(PILE_CASES["vestel-evc04"])
        modbus_servers.tcp([serve_image(img, 255, write_log=writes)], port=port)
        clock.t = st.next_due_s
        await keeper.tick()
        assert st.programmed and st.warnings == []
        assert writes == [(6, 2000, [6]), (6, 2002, [60]), (6, 6000, [1])]
    finally:
        pool.close()


async def test_apply_safe_setpoints_on_shutdown(modbus_servers) -> None:
    writes: list = []
    url = modbus_servers.tcp([serve_image(pile_image(PILE_CASES["keba-p30"]), 255, write_log=writes)])
    pool = BusPool()
    try:
        pile = ModbusPile(load_profile("keba-p30"), pool.get(url), 255, voltage_v=230, n_phases=3)
        keeper = FailsafeKeeper(ManualClock())
        await keeper.program(pile, pile.a_to_kw(10), "P001")
        writes.clear()
        assert await keeper.apply_safe_setpoints() == {}
        assert writes == [(6, 5004, [10000]), (6, 5014, [1])]
    finally:
        pool.close()


def test_fallback_rule() -> None:
    assert not fallback_active(100.0, 80.0, 30.0)
    assert fallback_active(111.0, 80.0, 30.0)
    assert not fallback_active(1e9, 0.0, 0.0)  # timeout 0: failsafe off


def _site(piles: list[dict], import_limit_kw: float = 560, margin_kw: float = 15) -> SiteConfig:
    return parse_site_config({
        "site": {"id": "t"},
        "transformer": {"rated_kva": 630, "import_limit_kw": import_limit_kw, "margin_kw": margin_kw},
        "meter": {"profile": "sdm630", "url": "modbus-tcp://10.0.0.2:502"},
        "piles": piles,
    })


def test_check_config_warnings() -> None:
    piles = [
        {"id": "C1", "profile": "phoenix-charx", "url": "modbus-tcp://10.0.0.3:502", "unit": 1, "failsafe_a": 6},
        {"id": "A1", "profile": "alfen-ng9xx", "url": "modbus-tcp://10.0.0.4:502", "failsafe_a": 8},
        {"id": "V1", "profile": "vestel-evc04", "url": "modbus-tcp://10.0.0.5:502"},
        {"id": "K1", "profile": "keba-p30", "url": "modbus-tcp://10.0.0.6:502", "failsafe_a": 6},
    ]
    warnings = failsafe_warnings(_site(piles))
    assert len(warnings) == 3
    assert warnings[0].startswith("piles[0] C1 (phoenix-charx): the pile has no failsafe registers")
    assert warnings[1].startswith("piles[1] A1 (alfen-ng9xx): the safe current is set in the vendor's installer")
    assert "set it to 8 A or less" in warnings[1]
    assert warnings[2] == "piles[2] V1 (vestel-evc04): failsafe_a not set; the pile falls back to min_a 6 A"


def test_check_config_failsafe_total() -> None:
    piles = [{"id": f"P{i}", "profile": "keba-p30", "url": f"modbus-tcp://10.0.1.{i}:502", "phase": "3P",
              "failsafe_a": 16, "max_a": 16} for i in range(1, 5)]
    cfg = _site(piles, import_limit_kw=50, margin_kw=10)
    assert cfg.piles[0].safe_kw == pytest.approx(11.04)
    warnings = failsafe_warnings(cfg)
    assert warnings == ["piles: failsafe total 44.2 kW is above the transformer's import limit less margin "
                        "(40.0 kW) even before household load; lower failsafe_a"]
    assert failsafe_warnings(_site(piles, import_limit_kw=60, margin_kw=10)) == []


def test_check_config_groups_piles_with_the_same_problem() -> None:
    piles = [{"id": f"A{i}", "profile": "alfen-ng9xx", "url": f"modbus-tcp://10.0.2.{i}:502", "failsafe_a": 6}
             for i in range(1, 9)]
    warnings = failsafe_warnings(_site(piles))
    assert warnings == ["8 alfen-ng9xx piles (A1, A2, A3, A4, A5, A6, ...): the safe current is set in the vendor's "
                        "installer tool, not by youxu; set it to 6 A or less (youxu checks it at start-up)"]
