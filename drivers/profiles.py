"""Device profiles: YAML register maps of meters and piles, as typed data.

A profile names quantities (``power``, ``voltage_l1``, ``energy`` ...) and says where each
lives: for Modbus the function code, wire address (0-based, as sent in the request), type,
word order, scale and the unit of the scaled value; for DL/T 645-2007 meters the data
identifier and the value's BCD format. The drivers convert every unit to youxu's
canonical ones (kW, kWh, V, A). Piles also describe their status codes, how a power
setpoint is written, and their failsafe registers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from youxu.config import data_path
from youxu.config.errors import UserError, format_validation_error
from youxu.config.userfiles import load_yaml
from youxu.drivers.dlt645 import ValueFormat, check_di

RegType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]
PileStatus = Literal["available", "connected", "charging", "fault", "unknown"]
PILE_STATUSES: tuple[str, ...] = ("available", "connected", "charging", "fault", "unknown")

WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4, "float32": 2, "float64": 4}

# unit of a scaled register value -> (canonical unit, factor)
UNIT_TO_CANONICAL: dict[str, tuple[str, float]] = {
    "W": ("kW", 1e-3),
    "kW": ("kW", 1.0),
    "Wh": ("kWh", 1e-3),
    "kWh": ("kWh", 1.0),
    "V": ("V", 1.0),
    "A": ("A", 1.0),
    "mA": ("A", 1e-3),
    "%": ("%", 1.0),
    "s": ("s", 1.0),
    "ms": ("s", 1e-3),
    "Hz": ("Hz", 1.0),
    "°C": ("°C", 1.0),  # a temperature (the transformer's ambient, say)
    "": ("", 1.0),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_INT_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")


class Register(_Model):
    fc: Literal[3, 4] = 3  # read function code: 3 holding, 4 input registers
    address: int = Field(ge=0, le=65535)
    type: RegType = "uint16"
    words: int | None = Field(default=None, ge=1, le=125)  # strings: registers it spans
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    unit: str = ""
    writable: bool = False
    write_fc: Literal[6, 16] | None = None  # how it is written; default: the profile's write_fc
    shift: int = Field(default=0, ge=0, le=63)  # integer fields packed in a register: (raw >> shift) & mask
    mask: int | None = Field(default=None, ge=1)
    doc: str = ""

    @model_validator(mode="after")
    def _check(self) -> Register:
        if self.type == "string" and self.words is None:
            raise ValueError("a string register needs 'words'")
        if self.unit not in UNIT_TO_CANONICAL:
            raise ValueError(f"unknown unit {self.unit!r}; use one of {sorted(UNIT_TO_CANONICAL)}")
        if (self.shift or self.mask is not None) and self.type not in _INT_TYPES:
            raise ValueError("shift and mask apply to integer registers only")
        if self.write_fc == 6 and self.count != 1:
            raise ValueError(f"function code 6 writes one register, but a {self.type} spans {self.count}")
        if self.writable and self.fc == 4:
            raise ValueError("input registers (fc 4) cannot be written")
        return self

    @property
    def count(self) -> int:
        return self.words if self.type == "string" else WORDS[self.type]

    @property
    def canonical_factor(self) -> float:
        """Multiply the raw register value by this to get the canonical unit (kW, kWh, A, ...)."""
        return self.scale * UNIT_TO_CANONICAL[self.unit][1]

    @property
    def canonical_unit(self) -> str:
        return UNIT_TO_CANONICAL[self.unit][0]

    def moved(self, offset: int) -> Register:
        return self.model_copy(update={"address": self.address + offset})


class Plugged(_Model):
    """A cable/vehicle register that tells `connected` apart from `available` when the status
    register alone cannot (e.g. KEBA's state 1 covers both 'no car' and 'car, not authorised')."""

    reg: Register = Field(alias="register")
    mask: int = Field(ge=1)  # the car is plugged when (value & mask) != 0


class Status(_Model):
    reg: Register = Field(alias="register")
    codes: dict[str, PileStatus]  # raw value (as text) -> status
    default: PileStatus = "unknown"
    plugged: Plugged | None = None


class Setpoint(_Model):
    """How the pile takes its power limit."""

    reg: Register = Field(alias="register")
    quantity: Literal["current", "power"]  # current per phase (A, mA) or total power (W, kW)
    signed: bool = False  # negative values discharge (V2G)
    min_a: float = 6.0  # smallest current the pile holds (IEC 61851: 6 A)
    max_a: float = 32.0
    zero_pauses: bool = True  # writing 0 pauses charging; if false, the profile's `enable` pauses it
    write_fc: Literal[6, 16] | None = None  # default: the register's, then the profile's write_fc
    readback: Register | None = None  # where the applied setpoint is read back, if not `register` itself
    validity: Register | None = None  # seconds the written setpoint stays valid, if the device asks
    validity_s: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Setpoint:
        if not self.reg.writable:
            raise ValueError("the setpoint register must be writable")
        if self.min_a > self.max_a:
            raise ValueError(f"min_a {self.min_a} is above max_a {self.max_a}")
        if self.quantity == "current" and self.reg.canonical_unit != "A":
            raise ValueError(f"a current setpoint needs unit A or mA, not {self.reg.unit!r}")
        if self.quantity == "power" and self.reg.canonical_unit != "kW":
            raise ValueError(f"a power setpoint needs unit W or kW, not {self.reg.unit!r}")
        return self


class Keepalive(_Model):
    """What proves the master is alive, and how often.

    action `write`: write `value` to `register`; `rewrite_timeout`: write the failsafe timeout
    again (KEBA); `rewrite_setpoint`: write the last setpoint again before its validity ends
    (Alfen); `read`: read `register` (devices that count any request, e.g. ABB)."""

    reg: Register | None = Field(default=None, alias="register")
    action: Literal["write", "rewrite_timeout", "rewrite_setpoint", "read"] = "write"
    value: int = 1
    interval_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Keepalive:
        if self.action in ("write", "read") and self.reg is None:
            raise ValueError(f"keep-alive action {self.action!r} needs a 'register'")
        if self.action == "write" and self.reg is not None and not self.reg.writable:
            raise ValueError("the keep-alive register must be writable")
        return self


class Failsafe(_Model):
    """The pile's own fallback when the master goes quiet.

    `current`: the safe current (or power) it falls back to; programmed at start-up when
    writable, otherwise only read and checked (set it in the vendor's tool). `timeout`: seconds
    without communication before it falls back (programmed to `timeout_s` when writable)."""

    current: Register | None = None
    current_readback: Register | None = None  # where `current` is read back, if it is write-only
    timeout: Register | None = None
    timeout_readback: Register | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    keepalive: Keepalive | None = None

    @model_validator(mode="after")
    def _check(self) -> Failsafe:
        if self.current is not None and self.current.canonical_unit not in ("A", "kW"):
            raise ValueError(f"failsafe current needs unit A, mA, W or kW, not {self.current.unit!r}")
        ka = self.keepalive
        if ka is not None and ka.action == "rewrite_timeout" and (self.timeout is None or not self.timeout.writable):
            raise ValueError("keep-alive 'rewrite_timeout' needs a writable failsafe 'timeout' register")
        if self.keepalive is not None and self.keepalive.interval_s >= self.timeout_s:
            raise ValueError(
                f"keep-alive interval {self.keepalive.interval_s} s must be shorter than timeout_s {self.timeout_s}"
            )
        return self

    @property
    def programmable(self) -> bool:
        """True when youxu can write the safe current itself."""
        return self.current is not None and self.current.writable


class Enable(_Model):
    reg: Register = Field(alias="register")
    on: int = 1
    off: int = 0


class Connector(_Model):
    """Several charge points behind one Modbus unit, each at `stride` × connector + offset
    (Phoenix CHARX). The site config's `unit` then names the connector (1, 2, ...), and every
    request goes to Modbus unit `device_id`; addresses in the profile are the offsets."""

    stride: int = Field(ge=1)
    device_id: int = Field(default=1, ge=0, le=255)
    first: int = Field(default=1, ge=0)
    last: int = Field(default=1, ge=0)


class DataItem(_Model):
    """A DL/T 645-2007 data identifier and how its value is written."""

    di: str  # DI3..DI0 as in the standard, e.g. "02030000" (total active power)
    format: str  # the standard's layout, e.g. "XX.XXXX"
    signed: bool = False  # the top bit of the highest byte is the sign (currents, powers)
    unit: str = ""
    every_s: float = Field(default=0.0, ge=0)  # read at most this often (0: every poll)
    doc: str = ""

    @model_validator(mode="after")
    def _check(self) -> DataItem:
        check_di(self.di)
        ValueFormat.parse(self.format, self.signed)
        if self.unit not in UNIT_TO_CANONICAL:
            raise ValueError(f"unknown unit {self.unit!r}; use one of {sorted(UNIT_TO_CANONICAL)}")
        return self

    @property
    def value_format(self) -> ValueFormat:
        return ValueFormat.parse(self.format, self.signed)

    @property
    def canonical_factor(self) -> float:
        return UNIT_TO_CANONICAL[self.unit][1]


class DataBlock(_Model):
    """A DL/T 645 block identifier that answers several items at once, in this order (e.g.
    0201FF00: the three phase voltages); a meter that does not know it is read item by item."""

    di: str
    items: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> DataBlock:
        check_di(self.di)
        return self


Transport = Literal["modbus-tcp", "modbus-rtu", "dlt645", "dlt645-tcp", "ocpp"]


class Profile(_Model):
    name: str
    kind: Literal["meter", "pile"]
    vendor: str = ""
    model: str = ""
    source: str = ""  # where the register map comes from
    protocol: Literal["modbus", "dlt645-2007", "ocpp"] = "modbus"
    transports: list[Transport] = Field(default_factory=lambda: ["modbus-tcp"])
    default_unit: int = Field(default=1, ge=0, le=255)
    max_read_gap: int = Field(default=16, ge=0)  # registers a block read may skip over
    max_read_count: int = Field(default=120, ge=1, le=125)  # registers one request may span
    write_fc: Literal[6, 16] = 16  # function code for writes, unless a register says otherwise
    energy_counter: Literal["session", "total"] = "session"  # what the pile's `energy` register counts
    connector: Connector | None = None
    registers: dict[str, Register] = Field(default_factory=dict)
    data_items: dict[str, DataItem] = Field(default_factory=dict)  # DL/T 645 meters
    data_blocks: list[DataBlock] = Field(default_factory=list)
    status: Status | None = None
    setpoint: Setpoint | None = None
    enable: Enable | None = None
    failsafe: Failsafe | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if self.protocol == "dlt645-2007":
            return self._check_dlt645()
        if self.protocol == "ocpp":
            if self.kind != "pile" or self.transports != ["ocpp"]:
                raise ValueError("an OCPP profile is a pile with transports [ocpp]")
            if self.registers or self.data_items or self.status or self.setpoint or self.failsafe:
                raise ValueError("an OCPP profile has no registers: the charge point reports and takes limits "
                                 "through OCPP messages")
            return self
        if self.data_items or self.data_blocks:
            raise ValueError("data_items and data_blocks are for protocol dlt645-2007; Modbus devices use registers")
        if any(not t.startswith("modbus") for t in self.transports):
            raise ValueError("a Modbus profile's transports are modbus-tcp and modbus-rtu")
        if self.kind == "pile":
            if self.status is None or self.setpoint is None:
                raise ValueError("a pile profile needs 'status' and 'setpoint'")
            if not self.setpoint.zero_pauses and self.enable is None:
                raise ValueError("setpoint.zero_pauses is false, so the profile needs 'enable' to pause charging")
        elif "power" not in self.registers and not all(f"power_l{i}" in self.registers for i in (1, 2, 3)):
            raise ValueError("a meter profile needs a 'power' register (or power_l1..power_l3)")
        for name, reg in self.writable_registers().items():
            if self.write_fc_for(reg) == 6 and reg.count != 1:
                raise ValueError(f"{name}: function code 6 writes one register, but a {reg.type} spans {reg.count}")
        if self.connector is not None and self.connector.last < self.connector.first:
            raise ValueError("connector.last is below connector.first")
        return self

    def _check_dlt645(self) -> Profile:
        if self.kind != "meter":
            raise ValueError("DL/T 645-2007 profiles are meters")
        if self.registers or self.status or self.setpoint or self.failsafe or self.enable:
            raise ValueError("a DL/T 645-2007 profile has data_items, not Modbus registers")
        if any(not t.startswith("dlt645") for t in self.transports):
            raise ValueError("a DL/T 645-2007 profile's transports are dlt645 and dlt645-tcp")
        items = self.data_items
        if "power" not in items and not all(f"power_l{i}" in items for i in (1, 2, 3)):
            raise ValueError("a meter profile needs a 'power' data item (or power_l1..power_l3)")
        for block in self.data_blocks:
            unknown = [n for n in block.items if n not in items]
            if unknown:
                raise ValueError(f"data block {block.di}: unknown data items {unknown}")
        return self

    def check_endpoint(self, scheme: str, protocol: str) -> None:
        """A device URL (its scheme and the protocol it carries, `Endpoint.protocol`) speaks this
        profile's protocol; ValueError saying which transports the profile takes otherwise."""
        if protocol != self.protocol:
            raise ValueError(f"profile {self.name} does not speak {scheme} (it supports {', '.join(self.transports)})")

    def read_registers(self) -> dict[str, Register]:
        """Every register read in one poll, including status and setpoint read-back."""
        regs = dict(self.registers)
        if self.status is not None:
            regs["status"] = self.status.reg
            if self.status.plugged is not None:
                regs["plugged"] = self.status.plugged.reg
        if self.setpoint is not None:
            regs["setpoint"] = self.setpoint.readback or self.setpoint.reg
        return regs

    def writable_registers(self) -> dict[str, Register]:
        """Registers youxu writes, by the names the register image uses."""
        out: dict[str, Register] = {}
        if self.setpoint is not None:
            out["setpoint"] = self.setpoint.reg
        if self.enable is not None:
            out["enable"] = self.enable.reg
        fs = self.failsafe
        if fs is not None:
            if fs.current is not None and fs.current.writable:
                out["failsafe_current"] = fs.current
            if fs.timeout is not None and fs.timeout.writable:
                out["failsafe_timeout"] = fs.timeout
            if fs.keepalive is not None and fs.keepalive.action == "write" and fs.keepalive.reg is not None:
                out["keepalive"] = fs.keepalive.reg
        return out

    def write_fc_for(self, reg: Register) -> int:
        """The function code a write to `reg` uses."""
        if reg.write_fc is not None:
            return reg.write_fc
        if self.setpoint is not None and reg is self.setpoint.reg and self.setpoint.write_fc is not None:
            return self.setpoint.write_fc
        return self.write_fc

    def for_connector(self, connector: int) -> Profile:
        """This profile with absolute addresses for one charge point (profiles with `connector`)."""
        if self.connector is None:
            return self
        c = self.connector
        if not c.first <= connector <= c.last:
            raise UserError(f"profile {self.name}: connector (unit) must be {c.first}..{c.last}, got {connector}")
        raw = _shift_addresses(self.model_dump(by_alias=True, exclude={"connector"}), c.stride * connector)
        return Profile.model_validate(raw)

    def bind(self, unit: int) -> tuple[Profile, int]:
        """(profile with absolute addresses, Modbus unit id) for a device configured with `unit`."""
        if self.connector is None:
            return self, unit
        return self.for_connector(unit), self.connector.device_id


def _shift_addresses(node: object, offset: int) -> object:
    if isinstance(node, dict):
        out = {k: _shift_addresses(v, offset) for k, v in node.items()}
        if "address" in out and "fc" in out and isinstance(out["address"], int):
            out["address"] += offset
        return out
    if isinstance(node, list):
        return [_shift_addresses(v, offset) for v in node]
    return node


def profile_dirs() -> list[Path]:
    return [data_path("devices")]


def _profile_file(name: str) -> Path | None:
    for d in profile_dirs():
        f = d / f"{name}.yaml"
        if f.is_file():
            return f
    return None


def parse_profile(raw: object, source: str) -> Profile:
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {format_validation_error(exc)}") from None


def load_profile_file(path: Path) -> Profile:
    return parse_profile(load_yaml(path), str(path))


@cache
def load_profile(name: str) -> Profile:
    """The shipped profile called `name` (or a path to a profile YAML)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else _profile_file(name)
    if path is None or not path.is_file():
        raise UserError(f"unknown device profile {name!r}; shipped: {', '.join(profile_names())}")
    return load_profile_file(path)


def profile_names() -> list[str]:
    names: set[str] = set()
    for d in profile_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)
