"""`youxu device` commands: one clear line and exit code 2 for every way commissioning goes wrong."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.fixtures_modbus import free_tcp_port, silent_device
from tests.test_device_profiles import METER_VALUES, PILE_CASES, meter_image, pile_image
from youxu.controller.cli import main
from youxu.drivers.profiles import load_profile
from youxu.sim.register_image import RegisterImage, serve_image


def fails(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """Run `youxu ...`, expect exit code 2; return the one error line."""
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return lines[0]


def test_list(capsys: pytest.CaptureFixture) -> None:
    assert main(["device", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["sdm630"]["kind"] == "meter" and "modbus-rtu" in rows["sdm630"]["transports"]
    assert rows["keba-p30"]["kind"] == "pile" and rows["keba-p30"]["transports"] == ["modbus-tcp"]
    assert rows["phoenix-charx"]["failsafe"] == "none"
    assert rows["alfen-ng9xx"]["failsafe"] == "checked"
    assert rows["vestel-evc04"]["failsafe"] == "programmed"
    assert main(["device", "list"]) == 0
    text = capsys.readouterr().out
    assert "dtsu666" in text and "meter" in text


def test_read_human(modbus_servers, capsys: pytest.CaptureFixture) -> None:
    url = modbus_servers.tcp([serve_image(meter_image("adw300"), 1)])
    assert main(["device", "read", "--profile", "adw300", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "power_kw: 3.625" in out and "import_kwh: 123456.75" in out


def test_wrong_unit(modbus_servers, capsys: pytest.CaptureFixture) -> None:
    url = modbus_servers.tcp([serve_image(meter_image("sdm630"), 1)])
    line = fails(capsys, "device", "read", "--profile", "sdm630", "--url", url, "--unit", "7")
    assert "unit 7" in line and "--unit" in line


def test_silent_unit_times_out(modbus_servers, capsys: pytest.CaptureFixture) -> None:
    url = modbus_servers.tcp([silent_device(3)])
    line = fails(capsys, "device", "read", "--profile", "sdm630", "--url", url, "--unit", "3", "--timeout", "0.3")
    assert line.startswith("youxu: error: no answer from sdm630 unit 3")
    assert "--unit" in line and "timeout after 0.30 s" in line


def test_nothing_listening(capsys: pytest.CaptureFixture) -> None:
    url = f"modbus-tcp://127.0.0.1:{free_tcp_port()}"
    line = fails(capsys, "device", "read", "--profile", "sdm630", "--url", url, "--timeout", "0.3")
    assert "cannot connect" in line


def test_wrong_profile_missing_registers(modbus_servers, capsys: pytest.CaptureFixture) -> None:
    url = modbus_servers.tcp([serve_image(meter_image("sdm630"), 1)])
    line = fails(capsys, "device", "read", "--profile", "dtsu666", "--url", url)
    assert "exception 2" in line and "not a dtsu666" in line


def test_wrong_profile_implausible_values(modbus_servers, capsys: pytest.CaptureFixture, tmp_path) -> None:
    url = modbus_servers.tcp([serve_image(meter_image("dtsu666"), 1)])
    raw = load_profile("dtsu666").model_dump(by_alias=True)
    for name in ("voltage_l1", "voltage_l2", "voltage_l3"):
        raw["registers"][name]["scale"] = 1.0  # someone forgot the 0.1 V scale
    path = tmp_path / "dtsu-noscale.yaml"
    path.write_text(yaml.safe_dump(raw))
    line = fails(capsys, "device", "read", "--profile", str(path), "--url", url)
    assert "implausible values" in line and "voltage L1 2314.0 V" in line and "wrong profile" in line


def test_word_order_mixup_is_implausible(modbus_servers, capsys: pytest.CaptureFixture, tmp_path) -> None:
    url = modbus_servers.tcp([serve_image(meter_image("sdm630"), 1)])
    raw = load_profile("sdm630").model_dump(by_alias=True)
    for reg in raw["registers"].values():
        reg["word_order"] = "little"
    path = tmp_path / "sdm-little.yaml"
    path.write_text(yaml.safe_dump(raw))
    line = fails(capsys, "device", "read", "--profile", str(path), "--url", url)
    assert "implausible values" in line or "non-finite" in line


def test_device_failure_exception(modbus_servers, capsys: pytest.CaptureFixture) -> None:
    img = RegisterImage(load_profile("sdm630"))

    def broken() -> None:
        raise OSError("measurement board fault")

    url = modbus_servers.tcp([serve_image(img, 1, on_read=broken)])
    line = fails(capsys, "device", "read", "--profile", "sdm630", "--url", url)
    assert "exception 4" in line and "device failure" in line


@pytest.mark.parametrize("argv, expect", [
    (["--profile", "nosuch", "--url", "modbus-tcp://127.0.0.1:1"], "unknown device profile 'nosuch'"),
    (["--profile", "sdm630", "--url", "http://meter"],
     "scheme must be one of modbus-tcp://, dlt645-tcp://, modbus-rtu://, dlt645://"),
    (["--profile", "sdm630", "--url", "modbus-rtu:///dev/ttyUSB0?baud=fast"], "baud must be a number"),
    (["--profile", "sdm630", "--url", "modbus-rtu:///dev/ttyUSB0?parity=X"], "parity must be N, E or O"),
    (["--profile", "sdm630", "--url", "modbus-rtu:///dev/ttyUSB0?baudrate=9600"], "unknown option 'baudrate'"),
    (["--profile", "alfen-ng9xx", "--url", "modbus-rtu:///dev/ttyUSB0"], "does not support modbus-rtu"),
    (["--profile", "phoenix-charx", "--url", "modbus-tcp://127.0.0.1:1", "--unit", "99"], "connector (unit) must be"),
    (["--profile", "sdm630", "--url", "modbus-tcp://127.0.0.1:1", "--unit", "300"], "--unit must be 0..255"),
])
def test_bad_arguments(argv: list[str], expect: str, capsys: pytest.CaptureFixture) -> None:
    assert expect in fails(capsys, "device", "read", *argv)


@pytest.mark.parametrize("amps, expect", [("40", "above keba-p30's maximum 32 A"),
                                          ("3", "below keba-p30's minimum 6 A (0 pauses)"),
                                          ("-1", "must be 0 (pause) or a positive current")])
def test_set_current_rejects_bad_amps(amps: str, expect: str, capsys: pytest.CaptureFixture) -> None:
    # no device needed: the value is refused before anything is sent
    url = f"modbus-tcp://127.0.0.1:{free_tcp_port()}"
    assert expect in fails(capsys, "device", "set-current", "--profile", "keba-p30", "--url", url, "--amps", amps)


def test_set_current_needs_a_pile(capsys: pytest.CaptureFixture) -> None:
    line = fails(capsys, "device", "set-current", "--profile", "sdm630", "--url", "modbus-tcp://127.0.0.1:1",
                 "--amps", "10")
    assert "set-current needs a pile profile" in line


def test_set_current_that_does_not_stick(modbus_servers, capsys: pytest.CaptureFixture) -> None:
    case = PILE_CASES["abb-terra-ac"]
    img = pile_image(case)

    def cap(name: str, value: float) -> None:  # the charger's own limit is 10 A
        if name == "setpoint":
            img.set("setpoint_readback", min(value, 10.0))

    url = modbus_servers.tcp([serve_image(img, 1, on_write=cap)])
    line = fails(capsys, "device", "set-current", "--profile", "abb-terra-ac", "--url", url, "--amps", "16")
    assert "wrote 16.0 A but the pile reports 10.0 A applied" in line
    # within its limit it sticks
    assert main(["device", "set-current", "--profile", "abb-terra-ac", "--url", url, "--amps", "8"]) == 0
    assert "read back 8 A" in capsys.readouterr().out


def test_meter_values_are_distinct() -> None:
    # the fixture values themselves must tell phases and quantities apart
    vals = [abs(v) for v in METER_VALUES.values()]
    assert len(set(vals)) == len(vals)
