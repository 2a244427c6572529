"""The issue as it was met, with real processes: `sim serve` serving the site over Modbus TCP and
MQTT, `youxu run` controlling it with its state on an ext4 volume, a grid engineer's dispatch
commands through Mosquitto; then the state files are made immutable under the running daemon
(`chattr +i`, as when a gateway's card stops taking writes), later writable again, and the daemon
is killed and restarted. Control never stops and no accepted command is lost."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.dispatch_builders import command
from tests.fixtures_mqtt import Broker
from tests.fixtures_volume import Ext4Volume
from tests.site_processes import logs_on_failure, mosquitto_pub_binary, start_site

CONTROL = {"period_s": 1.0, "default_dwell_s": 3600.0, "default_energy_kwh": 6.5}
MQTT = {"telemetry_period_s": 1.0, "reconnect_max_s": 1}
BASE_KW = 100.0


def chattr(flag: str, state: Path) -> None:
    for p in [*state.iterdir(), state]:
        subprocess.run(["chattr", flag, str(p)], check=True)


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return list(c.execute(sql, args))


async def test_state_files_immutable_under_the_running_daemon(mqtt_broker: Broker, tmp_path: Path,
                                                               ext4_volume: Ext4Volume) -> None:
    pub = mosquitto_pub_binary()
    if pub is None:
        pytest.skip("mosquitto_pub not found")
    workdir = tmp_path / "site"
    workdir.mkdir()
    (ext4_volume.path / "state").mkdir()
    (workdir / "state").symlink_to(ext4_volume.path / "state")
    site = await start_site(workdir, mqtt_broker.port, f"st-{time.monotonic_ns() % 10**9}", pub, base_kw=BASE_KW,
                            control=CONTROL, mqtt_cfg=MQTT)
    state = ext4_volume.path / "state"
    try:
        with logs_on_failure(site):
            assert site.grid is not None and site.daemon is not None and site.probe is not None
            await site.probe.until(lambda kw: kw > BASE_KW + 30.0, 20.0, "charging")
            now = time.time()
            looser = command(now, import_max_kw=135.0, minutes=10, seq=100)
            await site.publish("dispatch", looser)
            await site.grid.until_ack(looser["command_id"], "applied", 10.0)
            await asyncio.sleep(1.0)  # stored

            os.sync()  # what the kernel does every few seconds: the files' pages written back
            chattr("+i", state)
            tighter = command(time.time(), import_max_kw=125.0, minutes=10, seq=101)
            await site.publish("dispatch", tighter)
            try:
                received = await site.grid.until_ack(tighter["command_id"], "received", 5.0)
            except AssertionError:
                proc = site.daemon.proc
                assert site.daemon.running, f"youxu run died (exit {proc and proc.returncode}) once its state " \
                                            "files were immutable"
                raise
            assert received["reason"] == "NOT_PERSISTED"
            await site.grid.until_ack(tighter["command_id"], "applied", 10.0)  # control goes on
            await site.publish("dispatch", tighter)  # sent again: its previous ack, not OUT_OF_SEQUENCE
            await site.grid.until(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("duplicate")
                                  and m.json()["command_id"] == tighter["command_id"], 5.0)
            await asyncio.sleep(3.0)
            assert site.daemon.running, "youxu run died while its state files were immutable"
            assert await site.probe.until(lambda kw: kw <= 125.0 + 0.5, 10.0, "within the tighter limit")

            chattr("-i", state)
            await site.grid.until(lambda m: m.topic.endswith("/events")
                                  and m.json().get("kind") == "dispatch_store_restored", 20.0)
            assert rows(site.db, "select seq from dispatch_commands where command_id = ?",
                        tighter["command_id"]) == [(101,)]
            assert rows(site.db, "select last_seq from dispatch_issuer_seqs where issuer = ?",
                        tighter["issuer"]) == [(101,)]

            site.daemon.kill9()
            await site.start_daemon()
            t0 = time.time()
            tele = await site.grid.until(lambda m: m.topic == site.topic("telemetry")
                                         and m.json()["at"] and time.time() > t0 + 1.0, 10.0)
            active = set(tele[-1].json()["active_commands"])
            assert tighter["command_id"] in active and looser["command_id"] not in active
            replay = {**tighter, "command_id": "replayed-" + tighter["command_id"][:20]}
            await site.publish("dispatch", replay)
            assert (await site.grid.until_ack(replay["command_id"], "rejected", 5.0))["reason"] == "OUT_OF_SEQUENCE"
    finally:
        subprocess.run(["chattr", "-R", "-i", str(state)], capture_output=True)
        await site.close()
