"""DL/T 645-2007 meters end to end: a simulated meter in another process, over TCP (a transparent
serial gateway) and over a virtual RS-485 line (socat pty pair), read by `youxu device read`
and by the daemon's loop beside Modbus piles."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenarios import small_site
from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import NoGridLink
from youxu.controller.siteconfig import parse_site_config
from youxu.drivers.devices import LinePool, open_meter
from youxu.drivers.profiles import load_profile
from youxu.drivers.transport import DeviceTimeout
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.site_config import scenario_site_config

ADDRESS = "000012345678"
VALUES = ["--power-kw", "41.5,12.0,14.5,15.0", "--voltage-v", "230.1,229.4,231.0", "--current-a", "52.2,63.0,-65.1",
          "--energy-kwh", "123456.78,12.5"]
EXPECTED = {"profile": "dlt645-2007", "power_kw": 41.5, "phase_power_kw": {"L1": 12.0, "L2": 14.5, "L3": 15.0},
            "voltage_v": {"L1": 230.1, "L2": 229.4, "L3": 231.0}, "current_a": {"L1": 52.2, "L2": 63.0, "L3": -65.1},
            "import_kwh": 123456.78, "export_kwh": 12.5}


class MeterProcess:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "youxu.sim.dlt645_meter", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening"), line

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def tcp_meter(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    extra = getattr(request, "param", [])
    meter = MeterProcess("--tcp", f"127.0.0.1:{port}", "--address", ADDRESS, *VALUES, *extra)
    yield f"dlt645-tcp://127.0.0.1:{port}"
    meter.stop()


def device_read(url: str, address: str = ADDRESS, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "youxu.controller.cli", "device", "read", "--profile", "dlt645-2007",
                           "--url", url, "--address", address, "--json", *extra],
                          capture_output=True, text=True, timeout=60)


def test_device_read_over_a_tcp_gateway(tcp_meter: str) -> None:
    r = device_read(tcp_meter)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == EXPECTED


def test_device_read_over_a_virtual_rs485_line(serial_pair: tuple[str, str]) -> None:
    device_tty, youxu_tty = serial_pair
    # a pty takes no parity bit (termios refuses it): the line runs 8N1 here, 8E1 on a real meter
    meter = MeterProcess("--serial", device_tty, "--parity", "N", "--address", ADDRESS, *VALUES)
    try:
        r = device_read(f"dlt645://{youxu_tty}?baud=2400&parity=N", ADDRESS, "--timeout", "2")
    finally:
        meter.stop()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == EXPECTED


def test_another_address_gets_no_answer_and_one_line(tcp_meter: str) -> None:
    r = device_read(tcp_meter, "000012345679", "--timeout", "0.3")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no answer from meter 000012345679" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_modbus_profile_refuses_an_address_and_dlt645_needs_one(tcp_meter: str) -> None:
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "device", "read", "--profile", "dlt645-2007",
                        "--url", tcp_meter], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "needs --address" in r.stderr
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "device", "read", "--profile", "sdm630",
                        "--url", "modbus-tcp://127.0.0.1:1", "--address", ADDRESS], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--address is for DL/T 645 meters" in r.stderr


async def read_twice(url: str) -> tuple[int, int, object]:
    pool = LinePool()
    meter = open_meter(pool, load_profile("dlt645-2007"), url, address=ADDRESS, timeout_s=2.0)
    try:
        await meter.read()
        first = pool.dlt645(url).requests
        second = await meter.read()
        return first, pool.dlt645(url).requests - first, second
    finally:
        pool.close()


async def test_blocks_read_the_phases_in_one_request_and_slow_items_wait(tcp_meter: str) -> None:
    first, second, reading = await read_twice(tcp_meter)
    assert first == 3 + 2  # power, voltage and current blocks; the two energy counters
    assert second == 1  # only the power block is due again
    assert reading.power_kw == pytest.approx(41.5) and reading.import_kwh == pytest.approx(123456.78)


@pytest.mark.parametrize("tcp_meter", [["--no-blocks", "--no-preamble"]], indirect=True)
async def test_a_meter_without_blocks_is_read_item_by_item(tcp_meter: str) -> None:
    first, second, reading = await read_twice(tcp_meter)
    assert first == 3 + 12  # each block refused once, then every item on its own
    assert second == 4  # power and the three phase powers; the refused blocks are not asked again
    assert reading.phase_power_kw is not None and list(reading.phase_power_kw) == pytest.approx([12.0, 14.5, 15.0])
    assert reading.current_a["L3"] == pytest.approx(-65.1)


async def test_a_silent_line_times_out() -> None:
    pool = LinePool()
    meter = open_meter(pool, load_profile("dlt645-2007"), f"dlt645-tcp://127.0.0.1:{free_port()}", address=ADDRESS,
                       timeout_s=0.3)
    try:
        with pytest.raises(DeviceTimeout, match="cannot connect"):
            await meter.read()
    finally:
        pool.close()


def test_check_config_takes_a_dlt645_meter_and_names_what_is_missing(tmp_path: Path) -> None:
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "site.example.yaml").read_text())
    cfg["meter"] = {"profile": "dlt645-2007", "url": "dlt645:///dev/ttyUSB0?baud=2400&parity=E",
                    "address": ADDRESS}
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "check-config", "--skip-files", str(ok)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cfg["meter"].pop("address")
    cfg["meter"]["url"] = "modbus-tcp://10.0.0.2:502"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "check-config", "--skip-files", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "meter" in r.stderr and "does not speak modbus-tcp" in r.stderr


async def test_the_loop_reads_a_dlt645_meter_beside_modbus_piles(tcp_meter: str) -> None:
    from youxu.drivers.clock import VirtualClock

    sc = small_site(n_piles=2, base_kw=30.0, limit_kw=200.0)
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id="dlt",
                               control={"period_s": 1.0, "budget_ms": 3000.0, "strategy": "fairshare"})
    raw["meter"] = {"profile": "dlt645-2007", "url": tcp_meter, "address": ADDRESS, "timeout_s": 2.0}
    daemon = Daemon.build(parse_site_config(raw, "dlt645 site"), clock=clock, link=NoGridLink(), with_store=False)
    try:
        for _ in range(3):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
            time.sleep(0.01)
        snap = daemon.loop.last_snapshot
        assert snap is not None and snap.meter_ok and snap.pile_online.all()
        assert snap.meter_kw == pytest.approx(41.5)
        assert snap.meter_phase_kw is not None and list(snap.meter_phase_kw) == pytest.approx([12.0, 14.5, 15.0])
    finally:
        daemon.close()
        await site.stop()


async def test_a_meter_without_some_identifiers_still_gives_its_power() -> None:
    port = free_port()
    meter = MeterProcess("--tcp", f"127.0.0.1:{port}", "--address", ADDRESS, "--power-kw", "30,10,9,11")
    pool = LinePool()
    try:
        m = open_meter(pool, load_profile("dlt645-2007"), f"dlt645-tcp://127.0.0.1:{port}", address=ADDRESS,
                       timeout_s=2.0)
        r = await m.read()
        assert r.power_kw == pytest.approx(30.0) and r.voltage_v == {"L1": None, "L2": None, "L3": None}
        assert r.import_kwh is None
        asked = pool.dlt645(f"dlt645-tcp://127.0.0.1:{port}").requests
        await m.read()  # what it lacks is not asked again
        assert pool.dlt645(f"dlt645-tcp://127.0.0.1:{port}").requests - asked == 1
    finally:
        pool.close()
        meter.stop()
