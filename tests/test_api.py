"""The local API (contract section 9) over real HTTP, served by `youxu run` controlling `sim serve`
over Modbus TCP, with dispatch from Mosquitto: reads, bookings, overrides, tokens and bad bodies."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from tests.api_site import READ_TOKEN, WRITE_TOKEN, auth, start_api_site, until
from tests.fixtures_mqtt import Broker
from tests.site_processes import RunningSite, logs_on_failure, mosquitto_pub_binary, rfc3339

CST = timezone(timedelta(hours=8))
TELEMETRY_KEYS = {"schema", "at", "total_kw", "base_kw", "ev_kw", "phase_kw", "limit_kw", "active_commands", "piles"}


@pytest.fixture(scope="module")
def pub_binary() -> str:
    b = mosquitto_pub_binary()
    if b is None:
        pytest.skip("mosquitto_pub not installed")
    return b


@pytest.fixture
async def api_site(mqtt_broker: Broker, tmp_path: Path, pub_binary: str) -> AsyncIterator[tuple[RunningSite, str]]:
    site, base = await start_api_site(tmp_path, mqtt_broker.port, f"api-{time.monotonic_ns() % 10**9}", pub_binary,
                                      api={"rate_per_s": 50.0, "rate_burst": 100})
    try:
        with logs_on_failure(site):
            yield site, base
    finally:
        await site.close()


def client(base: str, token: str | None = READ_TOKEN) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers=auth(token) if token else {}, timeout=5.0)


def booking(departure_s: float, energy_kwh: float = 11.5, **extra: object) -> dict:
    return {"schema": "youxu.session/1", "departure": rfc3339(departure_s), "energy_kwh": energy_kwh, "v2g": False,
            "min_soc": 0.3, "priority": "normal", **extra}


async def test_reads_follow_the_site_and_the_grid(api_site: tuple[RunningSite, str]) -> None:
    site, base = api_site
    async with client(base) as c:
        st = (await c.get("/api/v1/status")).json()
        assert st.keys() >= TELEMETRY_KEYS and st["schema"] == "youxu.telemetry/1"
        assert st["state"] == "online" and st["version"]
        # the total is the transformer meter's, as the site's own probe reads it over Modbus (once the
        # cars have taken up the power the first ticks offered them)
        assert site.probe is not None
        await site.probe.until(lambda kw: kw > 135.0, 15.0, "the cars charging")

        async def as_metered() -> dict | None:
            st = (await c.get("/api/v1/status")).json()
            meter_kw = site.probe.latest_kw()
            return st if meter_kw is not None and abs(st["total_kw"] - meter_kw) < 1.0 else None

        st = await until(as_metered, 10.0, "the API's total as the meter's")
        assert st["limit_kw"] == pytest.approx(150.0)
        piles = (await c.get("/api/v1/piles")).json()["piles"]
        assert [p["pile_id"] for p in piles] == [f"P{i:02d}" for i in range(1, 7)]
        assert all(p["status"] in ("connected", "charging") and p["session"] for p in piles)
        sessions = (await c.get("/api/v1/sessions")).json()
        assert {s["pile_id"] for s in sessions["sessions"]} == {p["pile_id"] for p in piles}

        # a limit from the grid shows in /commands with its acks, and in /status as active
        cid = str(uuid.uuid4())
        now = time.time()
        await site.publish("dispatch", {
            "schema": "youxu.dispatch/1", "command_id": cid, "issuer": "api-test", "seq": 1,
            "issued_at": rfc3339(now), "type": "limit", "scope": "site", "priority": 1,
            "valid_from": rfc3339(now - 1), "valid_until": rfc3339(now + 600),
            "periods": [{"offset_s": 0, "import_max_kw": 125.0}], "response_required": True})

        async def applied() -> dict | None:
            cmds = (await c.get("/api/v1/commands")).json()["commands"]
            mine = [x for x in cmds if x["command_id"] == cid]
            statuses = [a["status"] for a in mine[0]["acks"]] if mine else []
            return mine[0] if "applied" in statuses else None

        cmd = await until(applied, 15.0, "the command applied")
        assert cmd["in_force"] and cmd["type"] == "limit" and cmd["command"]["periods"][0]["import_max_kw"] == 125.0
        assert [a["status"] for a in cmd["acks"]][:2] == ["received", "applied"]
        st = (await c.get("/api/v1/status")).json()
        assert cid in st["active_commands"] and st["limit_kw"] == pytest.approx(125.0)
        assert any(a["dispatch"] and a["limit_kw"] == pytest.approx(125.0) for a in st["limits_ahead"])

        # events since a time: the sessions that started when the daemon came up
        since = rfc3339(now - 120)
        ev = (await c.get("/api/v1/events", params={"since": since})).json()["events"]
        assert sum(e["kind"] == "session_started" for e in ev) == 6
        later = (await c.get("/api/v1/events", params={"since": rfc3339(time.time() + 60)})).json()["events"]
        assert later == []

        doc = (await c.get("/api/v1/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        assert {"/api/v1/status", "/api/v1/piles", "/api/v1/sessions", "/api/v1/commands", "/api/v1/events",
                "/api/v1/sessions/{pile_id}/request", "/api/v1/piles/{pile_id}/override"} <= doc["paths"].keys()


async def test_tokens_bodies_size_and_rate_are_checked(mqtt_broker: Broker, tmp_path: Path, pub_binary: str) -> None:
    site, base = await start_api_site(tmp_path, mqtt_broker.port, f"api-{time.monotonic_ns() % 10**9}", pub_binary,
                                      api={"rate_per_s": 2.0, "rate_burst": 30, "max_body_bytes": 2048})
    try:
        with logs_on_failure(site):
            dep = time.time() + 3 * 3600
            async with client(base, None) as anon, client(base, "not-a-token-at-all") as wrong, \
                    client(base) as reader, client(base, WRITE_TOKEN) as writer:
                r = await anon.get("/api/v1/status")
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
                assert (await wrong.get("/api/v1/piles")).status_code == 401
                assert (await anon.get("/api/v1/openapi.json")).status_code == 401
                assert (await reader.get("/api/v1/piles")).status_code == 200
                r = await reader.post("/api/v1/sessions/P01/request", json=booking(dep))
                assert r.status_code == 403 and r.json()["error"] == "FORBIDDEN"
                r = await reader.post("/api/v1/piles/P01/override", json={"action": "pause", "minutes": 5})
                assert r.status_code == 403
                # bad bodies: 422 with the field
                r = await writer.post("/api/v1/sessions/P01/request", json=booking(dep, energy_kwh=-3))
                assert r.status_code == 422 and r.json()["field"] == "energy_kwh"
                r = await writer.post("/api/v1/sessions/P01/request", json=booking(time.time() - 60))
                assert r.status_code == 422 and r.json()["field"] == "departure"
                body = booking(dep)
                del body["departure"]
                r = await writer.post("/api/v1/sessions/P01/request", json=body)
                assert r.status_code == 422 and r.json()["field"] == "departure"
                r = await writer.post("/api/v1/sessions/P01/request", content=b"{not json",
                                      headers={"Content-Type": "application/json"})
                assert r.status_code == 422 and r.json()["error"] == "BAD_SCHEMA"
                r = await writer.post("/api/v1/sessions/P01/request", json=booking(dep, v2g=True))
                assert r.status_code == 422 and r.json()["field"] == "v2g"
                r = await writer.post("/api/v1/piles/P01/override", json={"action": "pause"})
                assert r.status_code == 422 and r.json()["field"] == "minutes"
                r = await writer.post("/api/v1/piles/P01/override", json={"action": "explode", "minutes": 5})
                assert r.status_code == 422 and r.json()["field"] == "action"
                r = await writer.post("/api/v1/piles/P01/override", json={"action": "urgent", "minutes": 5, "x": 1})
                assert r.status_code == 422 and r.json()["field"] == "x"
                r = await reader.get("/api/v1/events", params={"since": "yesterday"})
                assert r.status_code == 422 and r.json()["field"] == "since"
                assert (await writer.post("/api/v1/sessions/P99/request", json=booking(dep))).status_code == 404
                # bounded body: declared or streamed
                big = json.dumps({**booking(dep), "pad": "x" * 4000}).encode()
                assert (await writer.post("/api/v1/sessions/P01/request", content=big)).status_code == 413

                async def chunks() -> AsyncIterator[bytes]:
                    for _ in range(8):
                        yield b" " * 512

                assert (await writer.post("/api/v1/sessions/P01/request", content=chunks())).status_code == 413
                # the rate: a burst of 30 then 2/s; a burst of 60 requests is cut with 429 and Retry-After
                codes = [(await reader.get("/api/v1/piles")).status_code for _ in range(60)]
                assert 429 in codes and codes[0] == 200
                r = next(r for r in [await reader.get("/api/v1/piles")] if r.status_code == 429)
                assert int(r.headers["retry-after"]) >= 1
                # none of the refused writes reached the site
                await asyncio.sleep(1.5)
                p01 = next(p for p in (await writer.get("/api/v1/piles")).json()["piles"] if p["pile_id"] == "P01")
                ss = (await writer.get("/api/v1/sessions")).json()["sessions"]
                assert p01["override"] is None and not next(s for s in ss if s["pile_id"] == "P01")["booked"]
    finally:
        await site.close()


async def test_a_booking_reaches_the_session_tracker_as_an_mqtt_one_would(api_site: tuple[RunningSite, str]) -> None:
    site, base = api_site
    dep = int(time.time()) + 5 * 3600
    async with client(base, WRITE_TOKEN) as c:
        r = await c.post("/api/v1/sessions/P02/request", json=booking(dep, energy_kwh=12.5))
        assert r.status_code == 202, r.text

        async def booked() -> dict | None:
            ss = (await c.get("/api/v1/sessions")).json()["sessions"]
            return next((s for s in ss if s["pile_id"] == "P02" and s["booked"]), None)

        s = await until(booked, 10.0, "the booking applied to P02's session")
        assert s["energy_requested_kwh"] == pytest.approx(12.5)
        assert datetime.fromisoformat(s["departure"]).timestamp() == pytest.approx(dep)
        p02 = next(p for p in (await c.get("/api/v1/piles")).json()["piles"] if p["pile_id"] == "P02")
        assert p02["energy_wanted_kwh"] == pytest.approx(12.5)
        ev = (await c.get("/api/v1/events", params={"since": rfc3339(time.time() - 60)})).json()["events"]
        acc = [e for e in ev if e["kind"] == "booking_accepted" and e.get("pile") == "P02"]
        assert acc and acc[-1]["by"] == "electrician"
    # the grid hears about it on `events`, as it does of MQTT bookings
    assert site.grid is not None

    def on_events() -> bool:
        with site.grid.lock:
            return any(m.topic == site.topic("events") and m.json().get("kind") == "booking_accepted"
                       for m in site.grid.messages)

    await until(_async(on_events), 5.0, "booking_accepted on the events topic")


async def test_pause_stops_the_pile_until_resumed_and_each_is_an_event(api_site: tuple[RunningSite, str]) -> None:
    _, base = api_site
    async with client(base, WRITE_TOKEN) as c:
        async def pile(pid: str) -> dict:
            return next(p for p in (await c.get("/api/v1/piles")).json()["piles"] if p["pile_id"] == pid)

        await until(lambda: _charging(pile, "P03"), 15.0, "P03 charging")
        r = await c.post("/api/v1/piles/P03/override", json={"action": "pause", "minutes": 10})
        assert r.status_code == 202, r.text
        until_s = datetime.fromisoformat(r.json()["until"]).timestamp()
        assert until_s == pytest.approx(time.time() + 600, abs=5)

        async def stopped() -> dict | None:
            p = await pile("P03")
            return p if p["setpoint_kw"] == 0 and p["power_kw"] is not None and p["power_kw"] < 0.1 else None

        p = await until(stopped, 10.0, "P03 drawing nothing")
        assert p["override"]["action"] == "pause"
        others = [x for x in (await c.get("/api/v1/piles")).json()["piles"] if x["pile_id"] != "P03"]
        assert all(x["setpoint_kw"] > 0 for x in others)
        r = await c.post("/api/v1/piles/P03/override", json={"action": "resume"})
        assert r.status_code == 202
        await until(lambda: _charging(pile, "P03"), 15.0, "P03 charging again")
        assert (await pile("P03"))["override"] is None
        ev = (await c.get("/api/v1/events", params={"since": rfc3339(time.time() - 120)})).json()["events"]
        overrides = [(e["action"], e.get("by")) for e in ev if e["kind"] == "pile_override" and e.get("pile") == "P03"]
        assert overrides == [("pause", "electrician"), ("resume", "electrician")]


async def _charging(pile, pid: str) -> bool:
    p = await pile(pid)
    return p["status"] == "charging" and (p["power_kw"] or 0) > 1.0 and (p["setpoint_kw"] or 0) > 1.0


def _async(fn):
    async def run():
        return fn()
    return run
