"""A simulated OCPP charge point (1.6J or 2.0.1) with one car, for tests and for trying the central
system: `python -m youxu.sim.ocpp_charge_point --url ws://127.0.0.1:8887 --id CP001`.

It boots, reports its connector, plugs the car in after `--plug-after-s`, starts a transaction
and charges at the smaller of the car's power and the limit its charging profiles give now (the
highest stack level among the valid TxProfile and TxDefaultProfile; none: the car's power), and
sends meter values every `--meter-every-s` (unless `--no-meter-values`). It writes what it does to
`--state-file` as JSON (limit, power, energy, profiles), so a test can see the limit in force.
`--reject-profiles` answers every SetChargingProfile with Rejected, as some firmwares do.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as A16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as A201
from websockets.asyncio.client import connect


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Car:
    """The connector, the car on it and the profiles the charge point holds."""

    car_kw: float
    voltage_v: float = 230.0
    phases: int = 1
    rate_unit: str = "A"
    reject: bool = False
    profiles: dict[int, dict] = field(default_factory=dict)  # profile id -> profile (normalised)
    plugged: bool = False
    transaction_id: str | None = None
    energy_wh: float = 0.0
    last_s: float = field(default_factory=time.time)

    def limit_kw(self, now_s: float) -> float | None:
        best: tuple[int, float] | None = None
        for p in self.profiles.values():
            valid_to = p.get("valid_to")
            if valid_to is not None and valid_to <= now_s:
                continue
            if p["purpose"] == "TxProfile" and (self.transaction_id is None or
                                               str(p.get("transaction_id")) != str(self.transaction_id)):
                continue
            if p["purpose"] not in ("TxProfile", "TxDefaultProfile"):
                continue
            if best is None or p["stack"] > best[0]:
                kw = p["limit"] * (self.voltage_v * self.phases if p["unit"] == "A" else 1.0) / 1000.0
                best = (p["stack"], kw)
        return None if best is None else best[1]

    def draw_kw(self, now_s: float) -> float:
        if not self.plugged:
            return 0.0
        limit = self.limit_kw(now_s)
        return self.car_kw if limit is None else max(0.0, min(self.car_kw, limit))

    def advance(self, now_s: float) -> None:
        self.energy_wh += self.draw_kw(self.last_s) * 1000.0 * max(0.0, now_s - self.last_s) / 3600.0
        self.last_s = now_s

    def store(self, pid: int, stack: int, purpose: str, unit: str, limit: float, valid_to: str | None,
              transaction_id: Any) -> str:
        if self.reject:
            return "Rejected"
        self.advance(time.time())
        self.profiles[pid] = {"stack": stack, "purpose": purpose, "unit": unit, "limit": float(limit),
                              "valid_to": parse_time(valid_to), "transaction_id": transaction_id}
        return "Accepted"

    def state(self) -> dict:
        t = time.time()
        limit = self.limit_kw(t)
        return {"t": t, "plugged": self.plugged, "transaction_id": self.transaction_id,
                "limit_kw": limit, "limit_a": None if limit is None else limit * 1000 / (self.voltage_v * self.phases),
                "draw_kw": self.draw_kw(t), "energy_wh": self.energy_wh,
                "profiles": {str(k): v for k, v in self.profiles.items()}}


class Sim16(Cp16):
    def __init__(self, cp_id: str, ws: Any, car: Car) -> None:
        super().__init__(cp_id, ws)
        self.car = car

    @on(A16.set_charging_profile)
    def on_set_profile(self, connector_id: int, cs_charging_profiles: dict, **_: Any) -> result16.SetChargingProfile:
        p = cs_charging_profiles
        sched = p["charging_schedule"]
        status = self.car.store(p["charging_profile_id"], p["stack_level"], p["charging_profile_purpose"],
                                sched["charging_rate_unit"], sched["charging_schedule_period"][0]["limit"],
                                p.get("valid_to"), p.get("transaction_id"))
        return result16.SetChargingProfile(status=status)

    @on(A16.get_configuration)
    def on_get_configuration(self, key: list | None = None, **_: Any) -> result16.GetConfiguration:
        unit = "Current" if self.car.rate_unit == "A" else "Power"
        return result16.GetConfiguration(configuration_key=[
            {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": unit}])

    @on(A16.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> result16.ChangeConfiguration:
        return result16.ChangeConfiguration(status="Accepted")

    @on(A16.clear_charging_profile)
    def on_clear(self, id: int | None = None, **_: Any) -> result16.ClearChargingProfile:
        if id is not None:
            self.car.profiles.pop(id, None)
        return result16.ClearChargingProfile(status="Accepted")

    async def boot(self) -> None:
        await self.call(call16.BootNotification(charge_point_model="SimCP", charge_point_vendor="youxu"))
        await self.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Available"))

    async def plug(self) -> None:
        self.car.plugged = True
        await self.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        r = await self.call(call16.StartTransaction(connector_id=1, id_tag="car", meter_start=int(self.car.energy_wh),
                                                    timestamp=now_iso()))
        self.car.transaction_id = str(r.transaction_id)
        await self.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))

    async def meter_values(self) -> None:
        c = self.car
        await self.call(call16.MeterValues(connector_id=1, transaction_id=int(c.transaction_id or 0), meter_value=[
            {"timestamp": now_iso(), "sampledValue": [
                {"value": f"{c.draw_kw(time.time()) * 1000:.1f}", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": f"{c.energy_wh:.1f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]))


class Sim201(Cp201):
    def __init__(self, cp_id: str, ws: Any, car: Car) -> None:
        super().__init__(cp_id, ws)
        self.car = car
        self.seq = 0

    @on(A201.set_charging_profile)
    def on_set_profile(self, evse_id: int, charging_profile: dict, **_: Any) -> result201.SetChargingProfile:
        p = charging_profile
        sched = p["charging_schedule"][0]
        status = self.car.store(p["id"], p["stack_level"], p["charging_profile_purpose"], sched["charging_rate_unit"],
                                sched["charging_schedule_period"][0]["limit"], p.get("valid_to"),
                                p.get("transaction_id"))
        return result201.SetChargingProfile(status=status)

    @on(A201.get_variables)
    def on_get_variables(self, get_variable_data: list, **_: Any) -> result201.GetVariables:
        return result201.GetVariables(get_variable_result=[
            {"attribute_status": "Accepted", "attribute_value": self.car.rate_unit,
             "component": d["component"], "variable": d["variable"]} for d in get_variable_data])

    @on(A201.set_variables)
    def on_set_variables(self, set_variable_data: list, **_: Any) -> result201.SetVariables:
        return result201.SetVariables(set_variable_result=[
            {"attribute_status": "Accepted", "component": d["component"], "variable": d["variable"]}
            for d in set_variable_data])

    async def boot(self) -> None:
        await self.call(call201.BootNotification(charging_station={"model": "SimCP", "vendor_name": "youxu"},
                                                 reason="PowerUp"))
        await self.call(call201.StatusNotification(timestamp=now_iso(), connector_status="Available", evse_id=1,
                                                   connector_id=1))

    def _tx(self, event: str, trigger: str, state: str) -> Any:
        self.seq += 1
        c = self.car
        return call201.TransactionEvent(
            event_type=event, timestamp=now_iso(), trigger_reason=trigger, seq_no=self.seq,
            transaction_info={"transaction_id": c.transaction_id, "charging_state": state}, evse={"id": 1,
                                                                                                  "connector_id": 1},
            meter_value=[{"timestamp": now_iso(), "sampled_value": [
                {"value": round(c.draw_kw(time.time()) * 1000, 1), "measurand": "Power.Active.Import"},
                {"value": round(c.energy_wh, 1), "measurand": "Energy.Active.Import.Register"}]}])

    async def plug(self) -> None:
        self.car.plugged = True
        self.car.transaction_id = f"tx-{int(time.time() * 1000)}"
        await self.call(call201.StatusNotification(timestamp=now_iso(), connector_status="Occupied", evse_id=1,
                                                   connector_id=1))
        await self.call(self._tx("Started", "CablePluggedIn", "Charging"))

    async def meter_values(self) -> None:
        await self.call(self._tx("Updated", "MeterValuePeriodic", "Charging"))


async def run(args: argparse.Namespace) -> int:
    car = Car(args.car_kw, rate_unit=args.rate_unit, reject=args.reject_profiles)
    version = "ocpp1.6" if args.version == "1.6" else "ocpp2.0.1"
    headers = {}
    if args.password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{args.id}:{args.password}".encode()).decode()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state_file = Path(args.state_file) if args.state_file else None

    def write_state(extra: dict) -> None:
        if state_file is None:
            return
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**car.state(), **extra}))
        os.replace(tmp, state_file)

    tls = None
    if args.url.startswith("wss://"):
        tls = ssl.create_default_context(cafile=args.ca_file)
    started = time.time()
    while not stop.is_set():
        try:
            async with connect(f"{args.url.rstrip('/')}/{args.id}", subprotocols=[version],  # type: ignore[list-item]
                               additional_headers=headers, open_timeout=5, ssl=tls) as ws:
                cp: Sim16 | Sim201 = (Sim16 if args.version == "1.6" else Sim201)(args.id, ws, car)
                serve = asyncio.create_task(cp.start())
                await cp.boot()
                write_state({"connected": True})
                next_meter = time.time()
                while not stop.is_set() and not serve.done():
                    now = time.time()
                    car.advance(now)
                    if not car.plugged and now - started >= args.plug_after_s:
                        await cp.plug()
                    if car.plugged and not args.no_meter_values and now >= next_meter:
                        await cp.meter_values()
                        next_meter = now + args.meter_every_s
                    write_state({"connected": True})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.2)
                serve.cancel()
        except (OSError, TimeoutError) as exc:
            write_state({"connected": False, "error": str(exc)})
            if args.once:
                print(f"cannot connect: {exc}", file=sys.stderr)
                return 1
        except Exception as exc:  # the central system refused us or closed the connection
            write_state({"connected": False, "error": f"{type(exc).__name__}: {exc}"})
            if args.once:
                print(f"connection failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m youxu.sim.ocpp_charge_point", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the central system, e.g. ws://127.0.0.1:8887")
    p.add_argument("--id", required=True, help="charge point id")
    p.add_argument("--version", choices=("1.6", "2.0.1"), default="1.6")
    p.add_argument("--password", help="basic-auth password (security profiles 1 and 2)")
    p.add_argument("--ca-file", help="CA that signed the central system's certificate (wss://, security profile 2)")
    p.add_argument("--car-kw", type=float, default=7.0)
    p.add_argument("--plug-after-s", type=float, default=0.5)
    p.add_argument("--meter-every-s", type=float, default=1.0)
    p.add_argument("--no-meter-values", action="store_true")
    p.add_argument("--rate-unit", choices=("A", "W"), default="A")
    p.add_argument("--reject-profiles", action="store_true")
    p.add_argument("--state-file")
    p.add_argument("--once", action="store_true", help="exit on the first failed connection")
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
