"""OCPP charge points in another process, on real websockets, against the daemon's central system:
1.6J and 2.0.1, limits through charging profiles, the failsafe default profile a charge point
falls back to by itself, refused ids and passwords, rejected profiles, missing meter values, and
the daemon's loop controlling OCPP piles beside a DL/T 645 meter."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.test_dlt645_meter import ADDRESS, MeterProcess
from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import NoGridLink
from youxu.controller.siteconfig import parse_site_config
from youxu.drivers.clock import RealClock
from youxu.drivers.ocpp_central import CentralSettings, CentralSystem, ChargePointSpec
from youxu.drivers.ocpp_pile import OcppPile
from youxu.drivers.transport import DeviceError
from youxu.sim.ports import free_port

VERSIONS = ["1.6", "2.0.1"]


class ChargePoint:
    """`python -m youxu.sim.ocpp_charge_point` with its state file."""

    def __init__(self, url: str, cp_id: str, state: Path, *args: str) -> None:
        self.state_file = state
        self.proc = subprocess.Popen([sys.executable, "-m", "youxu.sim.ocpp_charge_point", "--url", url, "--id", cp_id,
                                      "--state-file", str(state), *args], stderr=subprocess.PIPE, text=True)

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def until(what: Callable[[], bool], timeout_s: float = 15.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def central() -> AsyncIterator[Callable[..., Any]]:
    made: list[CentralSystem] = []
    events: list[tuple[str, str, dict]] = []

    async def make(ids: tuple[str, ...] = ("CP1",), **settings: Any) -> CentralSystem:
        s = {"host": "127.0.0.1", "port": 0, "security_profile": 0, "limit_validity_s": 3.0,
             "sample_interval_s": 1, **settings}
        c = CentralSystem(CentralSettings(**s), [ChargePointSpec(i, 6.0) for i in ids], RealClock(),
                          on_event=lambda kind, message, **f: events.append((kind, message, f)))
        c.events = events  # type: ignore[attr-defined]
        await c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.stop()


@pytest.fixture
def charge_points(tmp_path: Path):
    made: list[ChargePoint] = []

    def make(c: CentralSystem, cp_id: str = "CP1", *args: str) -> ChargePoint:
        cp = ChargePoint(f"ws://127.0.0.1:{c.port}", cp_id, tmp_path / f"{cp_id}-{len(made)}.json", *args)
        made.append(cp)
        return cp

    yield make
    for cp in made:
        cp.stop()


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_charge_point_boots_charges_and_takes_a_limit_that_lapses_to_its_failsafe(
        central, charge_points, version: str) -> None:
    c = await central()
    cp = charge_points(c, "CP1", "--version", version, "--car-kw", "7.0")
    pile = OcppPile(c, "CP1", 1)
    st = c.states["CP1"]
    await until(lambda: st.failsafe_set and st.connector(1).status == "charging", message="no boot and transaction")
    assert st.version == version and st.model == "SimCP"
    # before any limit the failsafe default profile holds the car at the safe current (6 A)
    await until(lambda: cp.state().get("limit_a") is not None)
    assert cp.state()["limit_a"] == pytest.approx(6.0)
    await until(lambda: (st.connector(1).power_kw or 0) == pytest.approx(1.38))
    await pile.write_setpoint_kw(2.3)  # 10 A
    await until(lambda: cp.state().get("limit_a") == pytest.approx(10.0), message="limit did not arrive")
    await until(lambda: (st.connector(1).power_kw or 0) == pytest.approx(2.3), message="no meter values at 10 A")
    r = await pile.read()
    assert r.status == "charging" and r.setpoint_a == pytest.approx(10.0) and r.energy_kwh is not None
    # nobody renews it: after its validity the charge point falls back to the failsafe by itself
    await until(lambda: cp.state().get("limit_a") == pytest.approx(6.0), timeout_s=8.0,
                message="the charge point did not fall back to its safe current")


async def test_a_small_change_is_not_sent_but_a_step_and_a_pause_are(central, charge_points) -> None:
    c = await central(limit_validity_s=60.0)
    cp = charge_points(c)
    pile = OcppPile(c, "CP1", 1)
    await until(lambda: c.states["CP1"].failsafe_set and c.states["CP1"].connector(1).transaction_id is not None)
    await pile.write_setpoint_kw(3.68)  # 16 A
    await until(lambda: pile.sent is not None and pile.sent.amps == 16.0)
    sent_at = pile.sent.sent_at_s
    await pile.write_setpoint_kw(3.68 + 0.05)  # 16.2 A: not worth a message
    await asyncio.sleep(0.3)
    assert pile.sent.sent_at_s == sent_at
    await pile.write_setpoint_kw(0.0)
    await until(lambda: pile.sent is not None and pile.sent.amps == 0.0)
    await until(lambda: cp.state().get("draw_kw") == 0.0, message="the pause did not reach the charge point")


async def test_an_unknown_charge_point_is_refused_and_raises_an_event(central, charge_points) -> None:
    c = await central()
    cp = charge_points(c, "INTRUDER", "--once")
    assert await asyncio.to_thread(cp.proc.wait, 15) == 1
    assert "INTRUDER" not in c.states and not c.sessions
    assert any(k == "ocpp_unknown_charge_point" and f["charge_point"] == "INTRUDER" for k, _, f in c.events)


async def test_basic_auth_takes_the_right_password_only(central, charge_points) -> None:
    c = await central(security_profile=1, passwords={"CP1": "s3cret"})
    bad = charge_points(c, "CP1", "--password", "wrong", "--once")
    assert await asyncio.to_thread(bad.proc.wait, 15) == 1
    assert any(k == "ocpp_auth_failed" for k, _, _ in c.events)
    charge_points(c, "CP1", "--password", "s3cret")
    await until(lambda: c.states["CP1"].booted, message="the right password was refused")


async def test_security_profile_2_is_basic_auth_over_tls(central, tmp_path: Path, mqtt_certs: Path) -> None:
    c = await central(security_profile=2, passwords={"CP1": "s3cret"}, cert_file=str(mqtt_certs / "server.crt"),
                      key_file=str(mqtt_certs / "server.key"))
    url = f"wss://127.0.0.1:{c.port}"
    plain = ChargePoint(f"ws://127.0.0.1:{c.port}", "CP1", tmp_path / "plain.json", "--password", "s3cret", "--once")
    cp = ChargePoint(url, "CP1", tmp_path / "tls.json", "--password", "s3cret", "--ca-file", str(mqtt_certs / "ca.crt"))
    try:
        assert await asyncio.to_thread(plain.proc.wait, 15) == 1  # no TLS, no connection
        await until(lambda: c.states["CP1"].booted and c.states["CP1"].failsafe_set,
                    message="the TLS charge point was not taken")
    finally:
        plain.stop()
        cp.stop()


async def test_a_charge_point_that_rejects_profiles_is_kept_in_reserve(central, charge_points) -> None:
    c = await central()
    charge_points(c, "CP1", "--reject-profiles")
    pile = OcppPile(c, "CP1", 1)
    await until(lambda: c.states["CP1"].connector(1).status == "charging")
    await pile.write_setpoint_kw(2.3)
    await until(lambda: c.states["CP1"].profiles_rejected, message="the rejection was not noticed")
    with pytest.raises(DeviceError, match="rejects charging profiles"):
        await pile.read()  # the loop then counts it at its full power
    kinds = [k for k, _, _ in c.events]
    assert "ocpp_failsafe_refused" in kinds and "ocpp_profile_rejected" in kinds


async def test_without_meter_values_a_charging_pile_reads_as_its_limit(central, charge_points) -> None:
    c = await central(limit_validity_s=60.0)
    charge_points(c, "CP1", "--no-meter-values")
    pile = OcppPile(c, "CP1", 1, max_a=32.0)
    await until(lambda: c.states["CP1"].connector(1).status == "charging")
    assert (await pile.read()).power_kw == pytest.approx(32 * 0.23)  # no limit yet: what it may draw
    await pile.write_setpoint_kw(2.3)
    await until(lambda: pile.sent is not None)
    assert (await pile.read()).power_kw == pytest.approx(2.3)


async def test_a_second_connection_replaces_the_first(central, charge_points) -> None:
    c = await central()
    charge_points(c, "CP1")
    await until(lambda: c.states["CP1"].booted)
    first = c.sessions["CP1"]
    charge_points(c, "CP1")
    await until(lambda: c.sessions.get("CP1") not in (None, first), message="the new connection was not taken")
    await asyncio.sleep(0.5)
    assert c.states["CP1"].connected and c.sessions["CP1"] is not first


async def test_the_daemon_controls_ocpp_piles_and_they_fall_back_when_it_is_killed(tmp_path: Path) -> None:
    import yaml

    port = free_port()
    meter = MeterProcess("--tcp", f"127.0.0.1:{port}", "--address", ADDRESS, "--power-kw", "30,10,10,10")
    ocpp_port, metrics_port = free_port(), free_port()
    raw = {
        "site": {"id": "ocpp-site", "timezone": "Asia/Shanghai"},
        "transformer": {"rated_kva": 100, "import_limit_kw": 40.0, "margin_kw": 0.0},
        "meter": {"profile": "dlt645-2007", "url": f"dlt645-tcp://127.0.0.1:{port}", "address": ADDRESS,
                  "timeout_s": 2.0},
        "piles": [{"id": f"P{i}", "profile": "ocpp", "url": f"ocpp://CP{i}", "phase": "L1", "failsafe_a": 6.0,
                   "timeout_s": 1.0} for i in (1, 2)],
        "ocpp": {"listen": f"127.0.0.1:{ocpp_port}", "security_profile": 0, "limit_validity_s": 4.0,
                 "sample_interval_s": 1},
        "control": {"period_s": 1.0, "budget_ms": 3000.0, "strategy": "fairshare"},
        "storage": {"state_dir": str(tmp_path / "state")},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "api": {"listen": None},
    }
    (tmp_path / "state").mkdir()
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "youxu.controller.cli", "run", "--config", str(cfg_file)],
                              stdout=log, stderr=subprocess.STDOUT)
    cps = [ChargePoint(f"ws://127.0.0.1:{ocpp_port}", f"CP{i}", tmp_path / f"cp{i}.json", "--car-kw", "7.0")
           for i in (1, 2)]

    def limits() -> list[float | None]:
        return [cp.state().get("limit_a") for cp in cps]

    try:
        # 40 kW limit, 30 kW on the meter: the daemon shares the 10 kW left between the two cars
        await until(lambda: all(a is not None and a > 6.5 for a in limits()), timeout_s=40.0,
                    message="the daemon did not give both cars a limit above their safe current")
        r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "youxu.controller.cli", "ocpp", "status",
                                                     "--config", str(cfg_file), "--json"],
                                    capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert all(row["connected"] and row["failsafe_set"] for row in json.loads(r.stdout))
        daemon.kill()  # no shutdown, no last word to the charge points
        await asyncio.to_thread(daemon.wait, 10)
        killed = time.monotonic()
        # nobody renews the limits: within their validity each charge point is back at its safe current
        await until(lambda: limits() == pytest.approx([6.0, 6.0]), timeout_s=15.0,
                    message="the charge points did not fall back to their safe current")
        assert time.monotonic() - killed <= 4.0 + 3.0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        log.close()
        for cp in cps:
            cp.stop()
        meter.stop()


def test_check_config_names_what_an_ocpp_site_lacks(tmp_path: Path) -> None:
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "site.example.yaml").read_text())
    cfg["piles"][0] = {"id": "OC1", "profile": "ocpp", "url": "ocpp://CP001", "phase": "L1"}

    def check() -> subprocess.CompletedProcess[str]:
        f = tmp_path / "site.yaml"
        f.write_text(yaml.safe_dump(cfg))
        return subprocess.run([sys.executable, "-m", "youxu.controller.cli", "check-config", "--skip-files", str(f)],
                              capture_output=True, text=True, timeout=60)

    r = check()
    assert r.returncode == 2 and "piles[0].url: an OCPP charge point; add an ocpp: section" in r.stderr
    cfg["ocpp"] = {"listen": "0.0.0.0:8887", "security_profile": 1}
    r = check()
    assert r.returncode == 2 and "security_profile 1 needs password_file" in r.stderr
    cfg["ocpp"]["password_file"] = str(tmp_path / "pw")
    cfg["piles"][0]["url"] = "ocpp://CP 1"
    r = check()
    assert r.returncode == 2 and "charge point id" in r.stderr
    cfg["piles"][0]["url"] = "ocpp://CP001/2"
    r = check()
    assert r.returncode == 0, r.stderr
    # without --skip-files the files are read as `youxu run` reads them
    cfg.pop("mqtt")
    f = tmp_path / "site.yaml"
    f.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "check-config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"ocpp.password_file {tmp_path / 'pw'}" in r.stderr
    (tmp_path / "pw").write_text("# passwords\nCP002:abc\n")
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "check-config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no password for CP001" in r.stderr
    (tmp_path / "pw").write_text("CP001:s3cret\n")
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "check-config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "device", "list", "--json"],
                       capture_output=True, text=True, timeout=60)
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["ocpp"]["kind"] == "pile" and rows["ocpp"]["transports"] == ["ocpp"]
    assert rows["dlt645-2007"]["transports"] == ["dlt645", "dlt645-tcp"]


async def test_a_charge_point_that_takes_watts_gets_its_limit_in_watts(central, charge_points) -> None:
    c = await central(limit_validity_s=60.0)
    cp = charge_points(c, "CP1", "--rate-unit", "W", "--version", "2.0.1")
    pile = OcppPile(c, "CP1", 1)
    await until(lambda: c.states["CP1"].failsafe_set)
    assert c.states["CP1"].rate_unit == "W"
    await pile.write_setpoint_kw(2.3)
    await until(lambda: cp.state().get("limit_kw") == pytest.approx(2.3), message="no limit in W")
    control = [p for p in cp.state()["profiles"].values() if p["stack"] == 1]
    assert control and control[0]["unit"] == "W" and control[0]["limit"] == pytest.approx(2300.0)


async def test_a_charge_point_that_vanishes_mid_transaction_and_comes_back(central, charge_points) -> None:
    c = await central(limit_validity_s=60.0)
    first = charge_points(c, "CP1")
    pile = OcppPile(c, "CP1", 1)
    await until(lambda: c.states["CP1"].connector(1).status == "charging")
    first.proc.kill()  # power cut: no StopTransaction, the TCP connection just ends
    await until(lambda: not c.states["CP1"].connected, message="the lost connection was not noticed")
    with pytest.raises(DeviceError, match="not connected"):
        await pile.read()
    charge_points(c, "CP1")
    await until(lambda: c.states["CP1"].connected and c.states["CP1"].connector(1).status == "charging")
    assert (await pile.read()).status == "charging"
    assert [k for k, _, _ in c.events].count("ocpp_disconnected") == 1


async def test_ocpp_status_lists_the_charge_points_of_a_running_daemon(tmp_path: Path) -> None:
    import yaml

    from youxu.controller.ops.httpserver import MetricsServer
    from youxu.controller.ops.metrics import LoopMetrics

    port, ocpp_port, metrics_port = free_port(), free_port(), free_port()
    meter = MeterProcess("--tcp", f"127.0.0.1:{port}", "--address", ADDRESS, "--power-kw", "30,10,10,10")
    raw = {
        "site": {"id": "ocpp-status", "timezone": "Asia/Shanghai"},
        "transformer": {"rated_kva": 100, "import_limit_kw": 60.0},
        "meter": {"profile": "dlt645-2007", "url": f"dlt645-tcp://127.0.0.1:{port}", "address": ADDRESS},
        "piles": [{"id": "P1", "profile": "ocpp", "url": "ocpp://CP1"},
                  {"id": "P2", "profile": "ocpp", "url": "ocpp://CP2"}],
        "ocpp": {"listen": f"127.0.0.1:{ocpp_port}", "security_profile": 0},
        "control": {"period_s": 1.0, "budget_ms": 3000.0, "strategy": "fairshare"},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
    }
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    daemon = Daemon.build(parse_site_config(raw), clock=RealClock(), link=NoGridLink(), with_store=False)
    server = MetricsServer(raw["metrics"]["listen"], daemon.loop, LoopMetrics(daemon.loop)).start()
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    cp = ChargePoint(f"ws://127.0.0.1:{ocpp_port}", "CP1", tmp_path / "cp1.json")
    try:
        await until(lambda: daemon.io.central is not None and daemon.io.central.states["CP1"].failsafe_set)
        r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "youxu.controller.cli", "ocpp", "status",
                                                     "--config", str(cfg_file), "--json"],
                                    capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        rows = {row["id"]: row for row in json.loads(r.stdout)}
        assert rows["CP1"]["connected"] and rows["CP1"]["failsafe_set"] and rows["CP1"]["rate_unit"] == "A"
        assert rows["CP1"]["version"] == "1.6" and rows["CP1"]["last_message_s_ago"] is not None
        assert not rows["CP2"]["connected"] and rows["CP2"]["last_message_s_ago"] is None
        r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "youxu.controller.cli", "ocpp", "status",
                                                     "--config", str(cfg_file)], capture_output=True, text=True,
                                    timeout=60)
        assert r.returncode == 0 and "CP1" in r.stdout and "failsafe set" in r.stdout
    finally:
        stop.set()
        await asyncio.wait_for(task, 20.0)
        server.stop()
        cp.stop()
        meter.stop()
        daemon.close()
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "youxu.controller.cli", "ocpp", "status",
                                                 "--config", str(cfg_file)], capture_output=True, text=True,
                                timeout=60)
    assert r.returncode == 2 and "no answer from the daemon" in r.stderr


async def test_a_dispatch_limit_brings_a_mixed_modbus_and_ocpp_site_under_it(
        tmp_path: Path, modbus_servers, mqtt_broker, grid) -> None:
    from tests.dispatch_builders import command
    from tests.fixtures_modbus import FailsafePileModel, FastClock
    from youxu.controller.grid.mqtt_link import MqttGridLink
    from youxu.controller.store.dispatch_store import MemoryDispatchStore

    port, ocpp_port = free_port(), free_port()
    meter = MeterProcess("--tcp", f"127.0.0.1:{port}", "--address", ADDRESS, "--power-kw", "20,7,7,6")
    model = FailsafePileModel(FastClock(speed=1.0, start_s=time.time()))
    modbus_url = modbus_servers.tcp([model.device(1)])
    site_id = f"mixed{free_port()}"
    raw = {
        "site": {"id": site_id, "timezone": "Asia/Shanghai"},
        "transformer": {"rated_kva": 100, "import_limit_kw": 90.0},
        "meter": {"profile": "dlt645-2007", "url": f"dlt645-tcp://127.0.0.1:{port}", "address": ADDRESS,
                  "timeout_s": 2.0},
        "piles": [{"id": "M1", "profile": "youxu-sim-pile", "url": modbus_url, "phase": "L1", "timeout_s": 1.0},
                  *({"id": f"O{i}", "profile": "ocpp", "url": f"ocpp://CP{i}", "phase": "L2"} for i in (1, 2))],
        "ocpp": {"listen": f"127.0.0.1:{ocpp_port}", "security_profile": 0, "sample_interval_s": 1},
        "mqtt": {"url": mqtt_broker.url, "reconnect_max_s": 1},
        "control": {"period_s": 1.0, "budget_ms": 3000.0, "strategy": "fairshare", "failsafe": False},
        "metrics": {"listen": None},
    }
    cfg = parse_site_config(raw)
    clock = RealClock()
    link = MqttGridLink(cfg, clock, MemoryDispatchStore())
    daemon = Daemon.build(cfg, clock=clock, link=link, with_store=False)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    cps = [ChargePoint(f"ws://127.0.0.1:{ocpp_port}", f"CP{i}", tmp_path / f"cp{i}.json", "--car-kw", "7.0")
           for i in (1, 2)]

    def ev_kw() -> float:
        snap = daemon.loop.last_snapshot
        return -1.0 if snap is None or not snap.pile_online.all() else float(snap.pile_kw.sum())

    try:
        await until(lambda: ev_kw() > 15.0, timeout_s=30.0, message="the three cars never charged together")
        cmd = command(clock.now(), import_max_kw=8.0, scope="ev", minutes=10)
        grid.publish(f"youxu/v1/{site_id}/dispatch", cmd)
        await grid.until_ack(cmd["command_id"], "received", 10.0)
        # every pile measures its own draw: the Modbus pile its register, the charge points their meter values
        await until(lambda: 0 <= ev_kw() <= 8.0 + 0.3, timeout_s=20.0,
                    message="the site did not come under the dispatch limit")
        await asyncio.sleep(2.5)  # and it stays there
        assert 0 <= ev_kw() <= 8.0 + 0.3
        assert model.applied_kw() + sum(cp.state()["draw_kw"] for cp in cps) <= 8.0 + 0.3
        await grid.until_ack(cmd["command_id"], "applied", 20.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20.0)
        for cp in cps:
            cp.stop()
        meter.stop()
        daemon.close()
