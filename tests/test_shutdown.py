"""`youxu run` stopped by SIGTERM or SIGINT (contract section 1): it exits 0, every pile is left at its
safe current (its failsafe current, else its minimum), read back from the devices through their
profiles with `youxu device read`, and the site says `offline` on its retained status."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fixtures_mqtt import Broker
from tests.site_processes import REPO, logs_on_failure, mosquitto_pub_binary, start_site

CONTROL = {"period_s": 1.0, "default_dwell_s": 3600.0, "default_energy_kwh": 6.5}  # cars want ~6.5 kW now
BASE_KW = 100.0


@pytest.fixture(scope="module")
def pub_binary() -> str:
    b = mosquitto_pub_binary()
    if b is None:
        pytest.skip("mosquitto_pub not found (apt-get install mosquitto-clients, or set MOSQUITTO_PUB=/path)")
    return b


def read_pile(pile: dict) -> dict:
    r = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "device", "read", "--profile", pile["profile"],
                        "--url", pile["url"], "--unit", str(pile.get("unit", 1)), "--json"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stopped_daemon_leaves_every_pile_at_its_safe_current(mqtt_broker: Broker, tmp_path: Path,
                                                                     pub_binary: str, sig: signal.Signals) -> None:
    site = await start_site(tmp_path, mqtt_broker.port, f"stop-{sig.name}-{time.monotonic_ns() % 10**9}", pub_binary,
                            n_piles=3, base_kw=BASE_KW, control=CONTROL)
    try:
        with logs_on_failure(site):
            assert site.probe is not None and site.daemon is not None and site.grid is not None
            await site.probe.until(lambda kw: kw > BASE_KW + 15.0, 20.0, "charging above 115 kW")
            cfg = yaml.safe_load(site.config.read_text(encoding="utf-8"))
            piles = cfg["piles"]
            charging = [read_pile(p) for p in piles]
            safe_a = [float(p["failsafe_a"]) if p.get("failsafe_a") is not None else float(p.get("min_a", 6.0))
                      for p in piles]
            assert all(r["setpoint_a"] > a for r, a in zip(charging, safe_a, strict=True)), charging  # a real change

            assert site.daemon.proc is not None
            site.daemon.proc.send_signal(sig)
            rc = await asyncio.get_running_loop().run_in_executor(None, site.daemon.proc.wait, 20)
            assert rc == 0, site.daemon.log()
            left = [read_pile(p) for p in piles]
            assert [r["setpoint_a"] for r in left] == pytest.approx(safe_a, abs=0.05), left
            status = site.grid.seen(lambda m: m.topic == site.topic("status"))
            assert status[-1].json()["state"] == "offline"
    finally:
        await site.close()
