"""The daemon's thermal state: advanced every tick from the measured load (real daemon, simulated meter
and piles over Modbus TCP, virtual clock), saved and resumed, reported in telemetry and events, and
a stale ambient source raising its alarm and falling back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fault_harness import TOL_KW, Run, start_run
from tests.fixtures_mqtt import Broker, GridClient, connect_client
from tests.scenarios import small_site
from tests.test_cli_errors import ROOT
from youxu.controller.daemon import Daemon
from youxu.controller.grid.dispatch_schema import format_rfc3339
from youxu.controller.grid.payloads import telemetry_payload
from youxu.controller.store.storage import Store
from youxu.scheduler import thermal

# 150 kW cap on 166.7 kVA; losses about those of a 160 kVA distribution transformer
THERMAL = {"load_loss_w": 2310, "no_load_loss_w": 300, "ambient": {"fixed_c": 30}}


def _state_of(rep) -> thermal.ThermalState:
    """A state from a report's temperatures (k21 = 1: the hot-spot is top-oil plus the winding rise)."""
    return thermal.ThermalState(rep.thermal["top_oil_c"], rep.thermal["hotspot_c"] - rep.thermal["top_oil_c"])


def _site():
    return small_site(n_piles=6, base_kw=90.0, limit_kw=150.0, hours=6, energy_kwh=60.0)


async def _ticks(run: Run, n: int, dt_s: float) -> list:
    """Tick n times; each tick the true load must stay within the limit the daemon reported."""
    reps = []
    for _ in range(n):
        rep = await run.tick(1, dt_s)
        reps.append(rep)
        total, _ = run.true_load()
        assert total <= rep.limit_kw + TOL_KW, (total, rep.limit_kw, rep.thermal)
    return reps


async def test_cold_start_assumes_the_worst_then_the_state_follows_the_measured_load():
    run = await start_run(_site(), thermal=THERMAL)
    try:
        loop = run.daemon.loop
        p = loop.thermal.params
        reps = await _ticks(run, 1, 30.0)
        first = reps[0].thermal
        worst = thermal.steady_state(p, 1.0, 30.0)  # rated load at the hottest ambient
        assert first["hotspot_c"] == pytest.approx(worst.hotspot_c, abs=0.05)  # 108 °C: never a cool transformer
        assert first["ambient_c"] == 30.0
        assert first["limit_kw"] < 150.0 and reps[0].limit_kw == pytest.approx(first["limit_kw"], abs=1e-3)
        alarm = run.link.of("thermal_alarm")
        assert [e[2]["cause"] for e in alarm] == ["hotspot"]
        reps += await _ticks(run, 600, 30.0)  # five hours at 30 s
        hot = [r.thermal["hotspot_c"] for r in reps]
        # the load it carried is what the meter measured: the state is the model run on it
        cleared = run.link.of("thermal_cleared")
        assert [e[2]["cause"] for e in cleared] == ["hotspot"]
        assert min(hot) < p.hotspot_max_c - 1.0
        # once the oil has cooled the limit is the kW cap again
        assert reps[-1].thermal["limit_kw"] == pytest.approx(150.0)
        # while it was hot the limit held the cars back; later they charged at more than it allowed then
        full_kw = 6 * 7.0
        assert reps[1].ev_kw < 0.6 * full_kw
        assert max(r.ev_kw for r in reps) > 0.95 * full_kw
        payload = telemetry_payload(reps[-1], [], run.daemon.cfg.tz)
        assert set(payload["thermal"]) == {"ambient_c", "top_oil_c", "hotspot_c", "limit_kw"}
    finally:
        await run.close()


async def test_restart_resumes_the_thermal_state(db_url: str):
    run = await start_run(_site(), db_url, thermal=THERMAL, storage={"state_period_s": 5.0})
    try:
        await _ticks(run, 400, 30.0)  # 200 min: the oil has cooled from the cold-start state
        loop = run.daemon.loop
        before = loop.thermal.state
        cold = loop.thermal.worst_state()
        assert before.hotspot_c < cold.hotspot_c - 15.0
        await run.tick(1, 1.0)
        run.daemon.save()
        saved = loop.thermal.state
        assert run.daemon.store.flush(10.0)
        alarms = len(run.link.of("thermal_alarm"))
        run.daemon.io.close()
        run.daemon.store.close()
        run.clock.set(run.clock.now() + 600.0)  # ten minutes away
        new = Daemon.build(run.daemon.cfg, clock=run.clock, link=run.link, store=Store(db_url), with_store=False)
        run.daemon = new
        th = new.loop.thermal
        assert th.resumed
        assert th.state.hotspot_c == pytest.approx(saved.hotspot_c, abs=1e-6)
        assert th.state.ageing_h == pytest.approx(saved.ageing_h, abs=1e-9)
        rep = await run.tick(1, 1.0)
        # the time away is bridged at rated load and the hottest ambient: warmer, not the cold-start state
        bridged = thermal.step(th.params, saved, 1.0, 30.0, 600.0 + 1.0)
        assert rep.thermal["hotspot_c"] == pytest.approx(bridged.hotspot_c, abs=0.01)
        assert saved.hotspot_c + 5.0 < rep.thermal["hotspot_c"] < cold.hotspot_c - 5.0
        assert len(run.link.of("thermal_alarm")) == alarms  # a resumed state raises no cold-start alarm
    finally:
        await run.close()


async def test_stale_mqtt_ambient_raises_its_alarm_and_falls_back(mqtt_broker: Broker):
    th = {**THERMAL, "ambient": {"mqtt": True, "stale_s": 120, "fallback_c": 38}}
    run = await start_run(_site(), thermal=th, mqtt={"url": mqtt_broker.url, "reconnect_max_s": 1})
    grid: GridClient = connect_client(mqtt_broker, f"grid-{id(run)}")
    try:
        link = run.daemon.link
        for _ in range(100):
            if link.connected:
                break
            await asyncio.sleep(0.05)
        prefix = f"youxu/v1/{run.daemon.cfg.site.id}/"
        grid.subscribe(prefix + "#", qos=1)
        await asyncio.sleep(0.3)
        tz = run.daemon.cfg.tz
        at_s = run.clock.now()
        grid.publish(prefix + "ambient", {"at": format_rfc3339(at_s, tz), "ambient_c": 12.5}, qos=0)
        for _ in range(100):
            if link.ambient() is not None:
                break
            await asyncio.sleep(0.05)
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == 12.5
        tel = await grid.until(lambda m: m.topic == prefix + "telemetry")
        assert tel[0].json()["thermal"]["ambient_c"] == 12.5
        rep = await run.tick(4, 30.0)  # the last of them 120 s after the reading: not yet stale
        assert rep.t_s - at_s == 120.0 and rep.thermal["ambient_c"] == 12.5
        await asyncio.sleep(0.3)
        assert [e["cause"] for e in grid.events("thermal_alarm")] == ["hotspot"]  # the cold start's only
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == 38.0  # the fallback
        stale = await grid.until(lambda m: m.topic == prefix + "events" and m.json()["kind"] == "thermal_alarm"
                                 and m.json()["cause"] == "ambient_stale")
        assert "38" in stale[0].json()["message"]
        grid.publish(prefix + "ambient", {"at": format_rfc3339(run.clock.now(), tz), "ambient_c": 14.0}, qos=0)
        for _ in range(100):
            if link.ambient()[1] == 14.0:
                break
            await asyncio.sleep(0.05)
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == 14.0
        ev = await grid.until_event("thermal_cleared")
        assert ev["cause"] == "ambient_stale"
    finally:
        grid.close()
        await run.close()


def _meter_with_temperature(tmp_path: Path) -> str:
    """The sdm630 map plus a float32 °C register past its power and energy block."""
    prof = yaml.safe_load((ROOT / "config" / "devices" / "sdm630.yaml").read_text())
    prof["name"] = "sdm630-ambient"
    prof["registers"]["ambient_temperature"] = {"fc": 4, "address": 0x60, "type": "float32", "unit": "°C"}
    path = tmp_path / "sdm630-ambient.yaml"
    path.write_text(yaml.safe_dump(prof, allow_unicode=True), encoding="utf-8")
    return str(path)


async def test_meter_register_ambient_and_its_staleness(tmp_path: Path):
    th = {**THERMAL, "ambient": {"meter_register": "ambient_temperature", "stale_s": 60, "fallback_c": 36}}
    run = await start_run(_site(), thermal=th, meter_profile=_meter_with_temperature(tmp_path), meter_grace_s=5.0)
    try:
        run.site.meter_image.set("ambient_temperature", -3.5)
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == -3.5
        # a cold start assumes the fallback as the hottest plausible ambient (36 °C), rated load
        assert rep.thermal["hotspot_c"] == pytest.approx(36.0 + 55.0 + 23.0, abs=0.3)
        run.site.meter_image.set("ambient_temperature", -2.0)
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == -2.0
        run.site.meter_fault = True  # the meter stops answering: no power and no temperature
        rep = await run.tick(2, 30.0)  # 60 s after the last reading: not yet stale
        assert rep.thermal["ambient_c"] == -2.0
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == 36.0
        assert [e[2]["cause"] for e in run.link.of("thermal_alarm")] == ["hotspot", "ambient_stale"]
        run.site.meter_fault = False
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == -2.0
        assert "ambient_stale" in [e[2]["cause"] for e in run.link.of("thermal_cleared")]
    finally:
        await run.close()


async def test_monthly_ambient_follows_the_local_month():
    """Half past midnight on 1 July in Beijing is still 30 June in UTC: the July value applies."""
    months = [-3.0, 0.0, 8.0, 16.0, 22.0, 27.0, 29.5, 28.0, 22.0, 14.0, 5.0, -1.0]
    sc = small_site(n_piles=2, base_kw=60.0, limit_kw=150.0, hours=1, start="2026-07-01T00:30:00+08:00")
    run = await start_run(sc, thermal={**THERMAL, "ambient": {"monthly_c": months}})
    try:
        rep = await run.tick(1, 30.0)
        assert rep.thermal["ambient_c"] == 29.5
        # the cold start assumes the hottest month at rated load
        assert rep.thermal["hotspot_c"] == pytest.approx(29.5 + 55.0 + 23.0, abs=0.3)
        horizon = run.daemon.loop.controller.thermal.ambient(run.clock.now() + np.array([0.0, 40 * 86400.0]))
        assert horizon.tolist() == [29.5, 28.0]  # the planner's ambient ahead: August after July
    finally:
        await run.close()


async def test_a_backward_clock_step_does_not_freeze_the_thermal_state():
    run = await start_run(_site(), thermal=THERMAL)
    try:
        reps = await _ticks(run, 10, 30.0)
        cooled_before = reps[0].thermal["hotspot_c"] - reps[-1].thermal["hotspot_c"]
        assert cooled_before > 0.5
        # NTP steps the wall clock back an hour between two ticks (as the ticker reports it); the virtual
        # clock only runs forwards, so it is stepped by hand
        run.clock._t -= 3600.0
        run.daemon.loop.on_clock_step(-3600.0)
        after = await _ticks(run, 10, 30.0)
        expected = thermal.simulate(run.daemon.loop.thermal.params, _state_of(reps[-1]),
                                    [r.total_kw / (0.95 * 150.0 / 0.9) for r in after], 30.0, np.full(10, 30.0))
        assert after[0].t_s < reps[-1].t_s  # the step happened
        # it keeps following the measured load, 30 s a tick: neither frozen nor bridged as a gap
        assert after[-1].thermal["hotspot_c"] < reps[-1].thermal["hotspot_c"] - 0.1
        assert after[-1].thermal["hotspot_c"] == pytest.approx(float(expected[1][-1]), abs=0.3)
    finally:
        await run.close()
