"""Every shipped profile against a simulated device serving exactly its register map, over
real Modbus TCP, through the `youxu device read` / `set-current` commands.

Values are chosen so that a wrong word order, scale, function code or an address off by
one gives a visibly different reading; `test_*_mutations_are_visible` proves it by reading
the same device through deliberately broken copies of each profile."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

from youxu.config.errors import UserError
from youxu.controller.cli import main
from youxu.controller.cli.device import read_device
from youxu.drivers.pile import ModbusPile
from youxu.drivers.profiles import Profile, Register, load_profile, profile_names
from youxu.drivers.registers import toward_zero_canonical
from youxu.drivers.transport import BusPool
from youxu.sim.register_image import RegisterImage, serve_image

METERS = ["sdm630", "dtsu666", "adw300"]
PILES = ["alfen-ng9xx", "abb-terra-ac", "keba-p30", "vestel-evc04", "phoenix-charx", "youxu-sim-pile"]

METER_VALUES = {
    "voltage_l1": 231.4, "voltage_l2": 229.8, "voltage_l3": 233.1,
    "current_l1": 12.5, "current_l2": 7.25, "current_l3": 3.12,
    "power_l1": 2.75, "power_l2": 1.5, "power_l3": -0.625, "power": 3.625,
    "import_energy": 123456.75, "export_energy": 42.5,
}
METER_EXPECTED = {
    "power_kw": 3.625,
    "phase_power_kw": {"L1": 2.75, "L2": 1.5, "L3": -0.625},
    "voltage_v": {"L1": 231.4, "L2": 229.8, "L3": 233.1},
    "current_a": {"L1": 12.5, "L2": 7.25, "L3": 3.12},
    "import_kwh": 123456.75,
    "export_kwh": 42.5,
}


def f32(x: float) -> list[int]:
    b = struct.pack(">f", x)
    return [int.from_bytes(b[:2], "big"), int.from_bytes(b[2:], "big")]


@dataclass
class PileCase:
    name: str
    unit: int  # as given to `--unit`
    served_unit: int  # Modbus unit id the device answers on
    raw: dict[str, Any]  # register name -> raw value in the profile's unit (set_raw)
    expected: dict[str, Any]  # contract JSON (without "profile")
    set_amps: float
    writes: list[tuple[int, int, list[int]]]  # exact (fc, address, words) of set-current
    readback_a: float | None
    pause_writes: list[tuple[int, int, list[int]]] = field(default_factory=list)
    statuses: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # raw values -> status


PILE_CASES = {
    "alfen-ng9xx": PileCase(
        "alfen-ng9xx", 1, 1,
        raw={"status": "C2", "power": 7360.0, "energy": 12_345_678.0, "setpoint": 13.5},
        expected={"status": "charging", "power_kw": 7.36, "energy_kwh": 12345.678, "setpoint_a": 13.5},
        set_amps=16, writes=[(16, 1210, f32(16.0))], readback_a=16.0,
        pause_writes=[(16, 1210, [0, 0])],
        statuses=[({"status": "A"}, "available"), ({"status": "B2"}, "connected"), ({"status": "C1"}, "connected"),
                  ({"status": "D2"}, "charging"), ({"status": "F"}, "fault")],
    ),
    "abb-terra-ac": PileCase(
        "abb-terra-ac", 1, 1,
        raw={"status": 4, "power": 7360, "energy": 5432, "setpoint": 13500, "plugged": 0x111},
        expected={"status": "charging", "power_kw": 7.36, "energy_kwh": 5.432, "setpoint_a": 13.5},
        set_amps=16, writes=[(16, 0x4100, [0, 16000])], readback_a=16.0,
        pause_writes=[(16, 0x4100, [0, 0])],
        statuses=[({"status": 0, "plugged": 0}, "available"), ({"status": 2, "plugged": 0x111}, "connected"),
                  ({"status": 5, "plugged": 0x111}, "connected"), ({"status": 5, "plugged": 0x011}, "available")],
    ),
    "keba-p30": PileCase(
        "keba-p30", 255, 255,
        raw={"status": 3, "power": 7_360_000, "energy": 123_456_000, "setpoint": 13500, "plugged": 7},
        expected={"status": "charging", "power_kw": 7.36, "energy_kwh": 12345.6, "setpoint_a": 13.5},
        set_amps=16, writes=[(6, 5004, [16000]), (6, 5014, [1])], readback_a=16.0,
        pause_writes=[(6, 5014, [0])],
        statuses=[({"status": 1, "plugged": 1}, "available"), ({"status": 1, "plugged": 7}, "connected"),
                  ({"status": 2, "plugged": 5}, "connected"), ({"status": 4, "plugged": 5}, "fault"),
                  ({"status": 0, "plugged": 0}, "unknown")],
    ),
    "vestel-evc04": PileCase(
        "vestel-evc04", 255, 255,
        raw={"status": 2, "power": 7360, "energy": 5432, "setpoint": 13},
        expected={"status": "charging", "power_kw": 7.36, "energy_kwh": 5.432, "setpoint_a": 13.0},
        set_amps=16, writes=[(6, 5004, [16])], readback_a=16.0,
        pause_writes=[(6, 5004, [0])],
        statuses=[({"status": 0}, "available"), ({"status": 4}, "connected"), ({"status": 8}, "fault")],
    ),
    "phoenix-charx": PileCase(
        "phoenix-charx", 2, 1,
        raw={"status": ord("C"), "power": 7_360_000, "energy": 12_345_678, "setpoint": 13},
        expected={"status": "charging", "power_kw": 7.36, "energy_kwh": 12345.678, "setpoint_a": 13.0},
        set_amps=16, writes=[(16, 2301, [16]), (16, 2300, [1])], readback_a=16.0,
        pause_writes=[(16, 2300, [0])],
        statuses=[({"status": ord("A")}, "available"), ({"status": ord("B")}, "connected"),
                  ({"status": ord("F")}, "fault")],
    ),
    "youxu-sim-pile": PileCase(
        "youxu-sim-pile", 1, 1,
        raw={"status": 2, "power": 7360, "energy": 5432, "setpoint": 3105},
        expected={"status": "charging", "power_kw": 7.36, "energy_kwh": 5.432, "setpoint_a": 13.5},
        set_amps=16, writes=[(16, 5, [0, 3680])], readback_a=16.0,
        pause_writes=[(16, 5, [0, 0])],
        statuses=[({"status": 0}, "available"), ({"status": 1}, "connected"), ({"status": 3}, "charging"),
                  ({"status": 4}, "fault")],
    ),
}


def meter_image(name: str) -> RegisterImage:
    img = RegisterImage(load_profile(name))
    for k, v in METER_VALUES.items():
        img.set(k, v)
    return img


def pile_image(case: PileCase) -> RegisterImage:
    img = RegisterImage(load_profile(case.name), connector=case.unit if case.name == "phoenix-charx" else None)
    set_words(img, case.raw)
    return img


def set_words(img: RegisterImage, raw: dict[str, Any]) -> None:
    """Set registers to raw register values (before scale); a value read back lives in the read-back register."""
    for k, v in raw.items():
        name = img.readbacks.get(k, k)
        img.set_raw(name, v if isinstance(v, str) else v * img.registers[name].scale)


def cli_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_every_contract_profile_is_shipped_and_tested() -> None:
    names = set(profile_names())
    assert {*METERS, *PILES} <= names
    assert set(PILE_CASES) == set(PILES)
    for n in names:
        prof = load_profile(n)
        assert prof.source, f"{n}: profile must say where its map comes from"


@pytest.mark.parametrize("name", METERS)
def test_meter_read(name: str, modbus_servers, capsys: pytest.CaptureFixture) -> None:
    url = modbus_servers.tcp([serve_image(meter_image(name), 1)])
    out = cli_json(capsys, "device", "read", "--profile", name, "--url", url, "--unit", "1", "--json")
    assert out == {"profile": name, **METER_EXPECTED}


@pytest.mark.parametrize("name", PILES)
def test_pile_read(name: str, modbus_servers, capsys: pytest.CaptureFixture) -> None:
    case = PILE_CASES[name]
    url = modbus_servers.tcp([serve_image(pile_image(case), case.served_unit)])
    out = cli_json(capsys, "device", "read", "--profile", name, "--url", url, "--unit", str(case.unit), "--json")
    assert out == {"profile": name, **case.expected}


@pytest.mark.parametrize("name", PILES)
async def test_pile_status_codes(name: str, modbus_servers) -> None:
    case = PILE_CASES[name]
    img = pile_image(case)
    url = modbus_servers.tcp([serve_image(img, case.served_unit)])
    pool = BusPool()
    try:
        for raw, status in case.statuses:
            set_words(img, raw)
            out = await read_device(load_profile(name), pool, url, case.unit, 1.0)
            assert out["status"] == status, raw
    finally:
        pool.close()


async def test_unavailable_setpoint_does_not_fail_the_poll(modbus_servers) -> None:
    # Alfen answers NaN (0xFFFF words) for a max current nobody has written yet
    case = PILE_CASES["alfen-ng9xx"]
    img = pile_image(case)
    img.set_raw("setpoint", float("nan"))
    url = modbus_servers.tcp([serve_image(img, 1)])
    pool = BusPool()
    try:
        out = await read_device(load_profile("alfen-ng9xx"), pool, url, 1, 1.0)
        assert out == {"profile": "alfen-ng9xx", **case.expected, "setpoint_a": None}
        img.set_raw("power", float("nan"))  # but a power it cannot read is an error
        with pytest.raises(UserError, match="non-finite"):
            await read_device(load_profile("alfen-ng9xx"), pool, url, 1, 1.0)
    finally:
        pool.close()


@pytest.mark.parametrize("name", PILES)
def test_pile_set_current_writes_exactly(name: str, modbus_servers, capsys: pytest.CaptureFixture) -> None:
    case = PILE_CASES[name]
    writes: list = []
    url = modbus_servers.tcp([serve_image(pile_image(case), case.served_unit, write_log=writes)])
    out = cli_json(capsys, "device", "set-current", "--profile", name, "--url", url, "--unit", str(case.unit),
                   "--amps", str(case.set_amps), "--json")
    assert writes == case.writes
    assert out["readback_a"] == case.readback_a
    assert [(w["address"], w["words"]) for w in out["writes"]] == [(a, w) for _, a, w in case.writes]

    writes.clear()
    out = cli_json(capsys, "device", "set-current", "--profile", name, "--url", url, "--unit", str(case.unit),
                   "--amps", "0", "--json")
    assert out["paused"] is True
    assert writes == case.pause_writes


def test_set_current_human_output(modbus_servers, capsys: pytest.CaptureFixture) -> None:
    case = PILE_CASES["keba-p30"]
    url = modbus_servers.tcp([serve_image(pile_image(case), 255)])
    assert main(["device", "set-current", "--profile", "keba-p30", "--url", url, "--amps", "10"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == "keba-p30 unit 255: set 10 A (wrote @5004=[10000], @5014=[1]); read back 10 A"


# ---- broken profiles give visibly wrong results ---------------------------------------------------
def _mutations(prof: Profile) -> dict[str, Profile]:
    raw = prof.model_dump(by_alias=True)

    def walk(node: Any, fn) -> Any:
        if isinstance(node, dict):
            node = {k: walk(v, fn) for k, v in node.items()}
            return fn(node) if "address" in node and "fc" in node else node
        if isinstance(node, list):
            return [walk(v, fn) for v in node]
        return node

    def variant(fn) -> Profile | None:
        new = walk(raw, fn)
        return None if new == raw else Profile.model_validate(new)

    def flip(r: dict) -> dict:
        multi = r["type"] in ("int32", "uint32", "float32", "int64", "uint64", "float64")
        return {**r, "word_order": "little" if r["word_order"] == "big" else "big"} if multi else r

    def scale10(r: dict) -> dict:
        return {**r, "scale": r["scale"] * 10} if r["unit"] else r

    out = {
        "address+1": variant(lambda r: {**r, "address": r["address"] + 1}),
        "address-1": variant(lambda r: {**r, "address": max(r["address"] - 1, 0)}),
        "word order": variant(flip),
        "function code": variant(lambda r: r if r["writable"] else {**r, "fc": 7 - r["fc"]}),
        "scale x10": variant(scale10),
    }
    return {k: v for k, v in out.items() if v is not None}


async def _read_or_error(prof: Profile, url: str, unit: int) -> dict | str:
    pool = BusPool()
    try:
        return await read_device(prof, pool, url, unit, 0.5)
    except UserError as exc:
        return f"error: {exc}"
    finally:
        pool.close()


@pytest.mark.parametrize("name", METERS)
async def test_meter_mutations_are_visible(name: str, modbus_servers) -> None:
    url = modbus_servers.tcp([serve_image(meter_image(name), 1)])
    good = await _read_or_error(load_profile(name), url, 1)
    assert good == {"profile": name, **METER_EXPECTED}
    muts = _mutations(load_profile(name))
    assert {"address+1", "word order", "function code"} <= set(muts)
    for what, prof in muts.items():
        assert await _read_or_error(prof, url, 1) != good, f"{name}: {what} went unnoticed"


@pytest.mark.parametrize("name", PILES)
async def test_pile_mutations_are_visible(name: str, modbus_servers) -> None:
    case = PILE_CASES[name]
    url = modbus_servers.tcp([serve_image(pile_image(case), case.served_unit)])
    good = await _read_or_error(load_profile(name), url, case.unit)
    assert good == {"profile": name, **case.expected}
    for what, prof in _mutations(load_profile(name)).items():
        assert await _read_or_error(prof, url, case.unit) != good, f"{name}: {what} went unnoticed"


async def test_a_current_limit_is_never_rounded_up_to_the_register_step() -> None:
    """9.7 A asked of a pile that takes whole amps is 9 A: 0.3 A less, never 0.3 A more (on 400 piles
    rounding to the nearest amp could put 46 kW over the transformer's limit); 6 A stays 6 A."""
    pool = BusPool()
    try:
        vestel = ModbusPile(load_profile("vestel-evc04"), pool.get("modbus-tcp://127.0.0.1:1"), 1,
                            voltage_v=230, n_phases=1)
        assert vestel.device_value(vestel.a_to_kw(9.7)) == 9.0
        assert vestel.device_value(vestel.a_to_kw(9.9999999)) == 9.0
        assert vestel.device_value(vestel.a_to_kw(6.0)) == 6.0
        assert vestel.device_value(vestel.a_to_kw(5.2)) == 6.0  # the pile's minimum, as before
        assert vestel.setpoint_words(vestel.a_to_kw(9.7)) == [9]
        keba = ModbusPile(load_profile("keba-p30"), pool.get("modbus-tcp://127.0.0.1:1"), 1, voltage_v=230, n_phases=3)
        assert keba.device_value(keba.a_to_kw(9.7)) == pytest.approx(9.7)  # mA: fine enough already
        alfen = ModbusPile(load_profile("alfen-ng9xx"), pool.get("modbus-tcp://127.0.0.1:1"), 1,
                           voltage_v=230, n_phases=3)
        assert alfen.device_value(alfen.a_to_kw(9.73)) == pytest.approx(9.73)  # float register: as asked
    finally:
        pool.close()


def test_toward_zero_keeps_the_sign_and_reaches_a_minimum_between_steps() -> None:
    reg = Register(fc=3, address=0, type="int16", unit="kW", scale=0.1, writable=True)
    assert toward_zero_canonical(2.37, reg) == pytest.approx(2.3)
    assert toward_zero_canonical(-2.37, reg) == pytest.approx(-2.3)  # discharge: no more than asked either
    assert toward_zero_canonical(1.38, reg, at_least=1.38) == pytest.approx(1.4)  # 6 A at 230 V
    assert toward_zero_canonical(1.2, reg, at_least=1.38) == pytest.approx(1.2)  # below the minimum: as it is
