"""`youxu device list | read | set-current`: commissioning a meter or pile through its profile."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from typing import Any

from youxu.config.errors import UserError

DEFAULT_TIMEOUT_S = 1.0
READBACK_TRIES = 5
READBACK_PAUSE_S = 0.2
READBACK_TOL_A = 0.15


def register(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser("device", help="device profiles; read or set a real meter or pile once")
    dsub = dev.add_subparsers(dest="device_command", required=True, parser_class=type(dev), metavar="ACTION")

    p = dsub.add_parser("list", help="the device profiles shipped, with kind and transports")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = dsub.add_parser("read", help="read a device once through its profile")
    _device_args(p)
    p.add_argument("--json", action="store_true", help="print the contract's JSON")
    p.set_defaults(func=cmd_read)

    p = dsub.add_parser("set-current", help="write a pile's current setpoint (0 pauses) and read it back")
    _device_args(p)
    p.add_argument("--amps", type=float, required=True, help="current per phase in A; 0 pauses")
    p.add_argument("--voltage", type=float, default=230.0,
                   help="phase voltage for piles that take power, not current (default 230)")
    p.add_argument("--phases", type=int, choices=(1, 3), default=1,
                   help="phases the pile charges on, for piles that take power (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_set_current)


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, help="profile name (see `youxu device list`) or a profile YAML")
    p.add_argument("--url", required=True, help="modbus-tcp://host:port, modbus-rtu:///dev/ttyUSB0?baud=9600&parity=N, "
                   "dlt645:///dev/ttyUSB0?baud=2400&parity=E or dlt645-tcp://host:port")
    p.add_argument("--unit", type=int, help="Modbus unit id (connector for phoenix-charx); default: the profile's")
    p.add_argument("--address", help="DL/T 645 meters: the 12-digit meter address (printed on the meter)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for an answer")


# ---- list ------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from youxu.drivers.profiles import load_profile, profile_names

    rows = []
    for name in profile_names():
        prof = load_profile(name)
        fs = prof.failsafe
        failsafe = None if prof.kind == "meter" else (
            "none" if fs is None else "programmed" if fs.programmable else "checked")
        rows.append({"name": name, "kind": prof.kind, "protocol": prof.protocol, "transports": list(prof.transports),
                     "vendor": prof.vendor, "model": prof.model, "default_unit": prof.default_unit,
                     "failsafe": failsafe})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = f"  failsafe {r['failsafe']}" if r["failsafe"] else ""
        unit = "address   " if r["protocol"] == "dlt645-2007" else f"unit {r['default_unit']:<3}  "
        print(f"{r['name']:<{width}}  {r['kind']:<5}  {','.join(r['transports']):<22}  {unit}"
              f"{r['vendor']} {r['model']}{extra}")
    return 0


# ---- shared ------------------------------------------------------------------------------
def _open(args: argparse.Namespace, kind: str | None = None) -> tuple[Any, Any, int]:
    """(profile, line pool, unit) for the command's device; UserError for bad input."""
    from youxu.drivers.devices import LinePool
    from youxu.drivers.dlt645 import check_address
    from youxu.drivers.profiles import load_profile
    from youxu.drivers.transport import parse_device_url

    prof = load_profile(args.profile)
    if kind is not None and prof.kind != kind:
        raise UserError(f"profile {prof.name} is a {prof.kind} profile; set-current needs a pile profile")
    try:
        ep = parse_device_url(args.url)
    except ValueError as exc:
        raise UserError(f"--url: {exc}") from None
    scheme = ep.scheme
    if prof.protocol == "ocpp":
        raise UserError("OCPP charge points connect to youxu's central system (`youxu run` with an ocpp: section); "
                        "they are not read or set one by one")
    if scheme not in prof.transports:
        raise UserError(f"profile {prof.name} does not support {scheme} (it supports {', '.join(prof.transports)})")
    if prof.protocol == "dlt645-2007":
        if args.address is None:
            raise UserError(f"profile {prof.name} needs --address (the meter's 12-digit address)")
        try:
            check_address(args.address)
        except ValueError as exc:
            raise UserError(f"--address: {exc}") from None
        if args.timeout <= 0:
            raise UserError(f"--timeout must be positive, got {args.timeout}")
        return prof, LinePool(), 0
    if getattr(args, "address", None) is not None:
        raise UserError(f"--address is for DL/T 645 meters; {prof.name} is a Modbus device (use --unit)")
    unit = prof.default_unit if args.unit is None else args.unit
    if not 0 <= unit <= 255:
        raise UserError(f"--unit must be 0..255, got {unit}")
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    prof.bind(unit)  # connector profiles: checks the connector number
    return prof, LinePool(), unit


def explain(exc: Exception, prof: Any, unit: int, url: str, address: str | None = None) -> str:
    """One line saying what a device error most likely means."""
    from youxu.drivers.transport import DeviceBackedOff, DeviceException, DeviceTimeout

    if prof.protocol == "dlt645-2007":
        return explain_dlt645(exc, prof, address or "", url)
    who = f"{prof.name} unit {unit} at {url}"
    hint_unit = f"check --unit (the profile's default is {prof.default_unit})"
    if isinstance(exc, DeviceTimeout):
        if "connect" in str(exc):
            return f"cannot connect to {url}: check the address, port or serial device ({exc})"
        return (f"no answer from {who}: {hint_unit}, the address, and on RS-485 the baud rate, parity and "
                f"wiring ({exc})")
    if isinstance(exc, DeviceException):
        if exc.code == 2:
            return (f"{who} has no such registers (exception 2, illegal data address): not a {prof.name}, "
                    f"a firmware without this map, or the wrong unit ({exc})")
        if exc.code == 1:
            return f"{who} refuses the function code (exception 1): not a {prof.name}? ({exc})"
        if exc.code in (10, 11):
            return f"the gateway at {url} has no device answering as unit {unit}: {hint_unit} ({exc})"
        if exc.code == 4:
            return f"{who} reports a device failure (exception 4): {hint_unit}, or the device is faulty ({exc})"
        return f"{who}: {exc}"
    if isinstance(exc, DeviceBackedOff):
        return f"{who}: {exc}"
    return f"{who}: {exc}"


def explain_dlt645(exc: Exception, prof: Any, address: str, url: str) -> str:
    from youxu.drivers.transport import DeviceException, DeviceTimeout

    who = f"meter {address} at {url}"
    if isinstance(exc, DeviceTimeout):
        if "connect" in str(exc):
            return f"cannot connect to {url}: check the serial device or the gateway's address and port ({exc})"
        return (f"no answer from {who}: check --address (12 digits, as printed on the meter), and on RS-485 "
                f"the baud rate (2400 by default), parity (E) and wiring ({exc})")
    if isinstance(exc, DeviceException):
        return f"{who} refuses the read: {exc} (a meter without these data identifiers: not a {prof.name}?)"
    return f"{who}: {exc}"


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def meter_problems(reading: Any) -> list[str]:
    """Values no real transformer meter shows: the profile, unit or scale is wrong."""
    out = []
    for ph, v in reading.voltage_v.items():
        if v is not None and not 80.0 <= v <= 300.0:
            out.append(f"voltage {ph} {v:.1f} V")
    for ph, a in reading.current_a.items():  # signed on meters that give the direction (DL/T 645)
        if a is not None and not -10000.0 <= a <= 10000.0:
            out.append(f"current {ph} {a:.1f} A")
    if abs(reading.power_kw) > 5000:
        out.append(f"power {reading.power_kw:.0f} kW")
    ph = reading.phase_power_kw
    if ph is not None:
        total = float(sum(ph))
        if abs(total - reading.power_kw) > 0.1 * abs(reading.power_kw) + 1.0:
            out.append(f"phase powers add to {total:.2f} kW but the total is {reading.power_kw:.2f} kW")
    for name, e in (("import", reading.import_kwh), ("export", reading.export_kwh)):
        if e is not None and not 0.0 <= e < 1e9:
            out.append(f"{name} energy {e:.1f} kWh")
    return out


def pile_problems(reading: Any, prof: Any) -> list[str]:
    out = []
    if abs(reading.power_kw) > 400 or (reading.power_kw < -0.5 and not prof.setpoint.signed):
        out.append(f"power {reading.power_kw:.2f} kW")
    if reading.energy_kwh is not None and not 0.0 <= reading.energy_kwh < 1e7:
        out.append(f"energy {reading.energy_kwh:.1f} kWh")
    if reading.setpoint_a is not None and not -100.0 <= reading.setpoint_a <= 100.0:
        out.append(f"setpoint {reading.setpoint_a:.1f} A")
    return out


# ---- read ------------------------------------------------------------------------------
async def read_device(prof: Any, pool: Any, url: str, unit: int, timeout_s: float,
                      address: str | None = None) -> dict[str, Any]:
    """The contract's JSON for one read of a meter or pile (raises UserError on trouble). `pool` is a
    LinePool, or a Modbus BusPool for Modbus devices."""
    from youxu.drivers.devices import LinePool, open_meter
    from youxu.drivers.pile import ModbusPile
    from youxu.drivers.transport import DeviceError

    pool = pool if isinstance(pool, LinePool) else LinePool(pool)

    try:
        if prof.kind == "meter":
            meter = open_meter(pool, prof, url, unit=unit, address=address, timeout_s=timeout_s)
            m = await meter.read(timeout_s)
            problems = meter_problems(m)
            out = m.as_contract(prof.name)
        else:
            pile = ModbusPile(prof, pool.buses.get(url, timeout_s), unit, timeout_s=timeout_s)
            p = await pile.read(timeout_s)
            problems = pile_problems(p, prof)
            out = p.as_contract(prof.name)
    except DeviceError as exc:
        raise UserError(explain(exc, prof, unit, url, address)) from None
    if problems:
        who = f"address {address}" if address else f"unit {unit}"
        raise UserError(f"implausible values from {prof.name} {who} at {url}: {'; '.join(problems)} "
                        "(wrong profile, unit or scale?)")
    return out


def _human(out: dict[str, Any]) -> str:
    lines = []
    for k, v in out.items():
        if isinstance(v, dict):
            v = "  ".join(f"{kk} {'-' if vv is None else vv}" for kk, vv in v.items())
        lines.append(f"{k:>15}: {'-' if v is None else v}")
    return "\n".join(lines)


async def cmd_read(args: argparse.Namespace) -> int:
    prof, pool, unit = _open(args)
    try:
        out = await read_device(prof, pool, args.url, unit, args.timeout, args.address)
    finally:
        pool.close()
    print(json.dumps(out) if args.json else _human(out))
    return 0


# ---- set-current -------------------------------------------------------------------------
def check_amps(prof: Any, amps: float) -> None:
    sp = prof.setpoint
    if not math.isfinite(amps) or amps < 0:
        raise UserError(f"--amps must be 0 (pause) or a positive current, got {amps:g}")
    if amps > sp.max_a:
        raise UserError(f"--amps {amps:g} is above {prof.name}'s maximum {sp.max_a:g} A")
    if 0 < amps < sp.min_a:
        raise UserError(f"--amps {amps:g} is below {prof.name}'s minimum {sp.min_a:g} A (0 pauses)")


async def set_current(prof: Any, pool: Any, url: str, unit: int, amps: float, timeout_s: float,
                      voltage_v: float = 230.0, n_phases: int = 1) -> dict[str, Any]:
    """Write `amps` and read the applied setpoint back; UserError when it does not stick."""
    from youxu.drivers.devices import LinePool
    from youxu.drivers.pile import ModbusPile
    from youxu.drivers.transport import DeviceError

    pool = pool if isinstance(pool, LinePool) else LinePool(pool)
    check_amps(prof, amps)
    pile = ModbusPile(prof, pool.buses.get(url, timeout_s), unit, voltage_v=voltage_v, n_phases=n_phases,
                      timeout_s=timeout_s)
    try:
        written = await pile.write_current_a(amps, timeout_s)
        readback = await _read_back(pile, written, timeout_s)
    except DeviceError as exc:
        raise UserError(explain(exc, prof, unit, url)) from None
    writes = [{"address": a, "words": list(w)} for a, w in written.writes]
    out = {"profile": prof.name, "unit": unit, "amps": amps, "paused": written.paused, "writes": writes,
           "readback_a": None if readback is None else round(readback, 3)}
    return out


async def _read_back(pile: Any, written: Any, timeout_s: float) -> float | None:
    """The setpoint the pile reports, once it equals what was written (or the last value seen)."""
    from youxu.drivers.transport import DeviceError

    if written.paused and not pile.setpoint_spec.zero_pauses:
        return None  # paused through `enable`: the current setpoint keeps its old value
    want = written.device_value if pile.setpoint_spec.quantity == "current" else pile.kw_to_a(written.device_value)
    got = None
    for i in range(READBACK_TRIES):
        got = await pile.read_setpoint_a(timeout_s)
        if got is None or abs(got - want) <= READBACK_TOL_A:
            return got
        if i + 1 < READBACK_TRIES:
            await asyncio.sleep(READBACK_PAUSE_S)
    raise DeviceError(f"wrote {want:.1f} A but the pile reports {got:.1f} A applied (it caps the current, "
                      "or ignored the write: is writing allowed in its settings?)")


async def cmd_set_current(args: argparse.Namespace) -> int:
    prof, pool, unit = _open(args, kind="pile")
    if args.voltage <= 0:
        raise UserError(f"--voltage must be positive, got {args.voltage}")
    try:
        out = await set_current(prof, pool, args.url, unit, args.amps, args.timeout, args.voltage, args.phases)
    finally:
        pool.close()
    if args.json:
        print(json.dumps(out))
    else:
        what = "paused (0 A)" if out["paused"] else f"set {args.amps:g} A"
        wrote = ", ".join(f"@{w['address']}={w['words']}" for w in out["writes"])
        back = "no read-back register" if out["readback_a"] is None else f"read back {out['readback_a']:g} A"
        print(f"{prof.name} unit {unit}: {what} (wrote {wrote}); {back}")
    return 0
