"""Device profiles: YAML register maps of meters and piles, as typed data.

A profile names quantities (``power``, ``voltage_l1``, ``energy`` ...) and says where each
lives: function code, wire address (0-based, as sent in the request), type, word order,
scale and the unit of the scaled value. The drivers convert every unit to youxu's
canonical ones (kW, kWh, V, A). Piles also describe their status codes, how a power
setpoint is written, and their failsafe registers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config import data_path
from controller.errors import UserError, format_validation_error

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
    "": ("", 1.0),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Register(_Model):
    fc: Literal[3, 4] = 3  # read function code: 3 holding, 4 input registers
    address: int = Field(ge=0, le=65535)
    type: RegType = "uint16"
    words: int | None = Field(default=None, ge=1, le=125)  # strings: registers it spans
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    unit: str = ""
    writable: bool = False
    doc: str = ""

    @model_validator(mode="after")
    def _check(self) -> Register:
        if self.type == "string" and self.words is None:
            raise ValueError("a string register needs 'words'")
        if self.unit not in UNIT_TO_CANONICAL:
            raise ValueError(f"unknown unit {self.unit!r}; use one of {sorted(UNIT_TO_CANONICAL)}")
        return self

    @property
    def count(self) -> int:
        return self.words if self.type == "string" else WORDS[self.type]

    @property
    def canonical_factor(self) -> float:
        """Multiply the raw register value by this to get the canonical unit (kW, kWh, A, ...)."""
        return self.scale * UNIT_TO_CANONICAL[self.unit][1]


class Status(_Model):
    reg: Register = Field(alias="register")
    codes: dict[str, PileStatus]  # raw value (as text) -> status
    default: PileStatus = "unknown"


class Setpoint(_Model):
    """How the pile takes its power limit."""

    reg: Register = Field(alias="register")
    quantity: Literal["current", "power"]  # current per phase (A, mA) or total power (W, kW)
    signed: bool = False  # negative values discharge (V2G)
    min_a: float = 6.0
    max_a: float = 32.0
    zero_pauses: bool = True  # writing 0 pauses charging
    write_fc: Literal[6, 16] = 16
    validity: Register | None = None  # seconds the written setpoint stays valid, if the device asks
    validity_s: float | None = None


class Keepalive(_Model):
    reg: Register = Field(alias="register")
    value: int = 1
    interval_s: float = Field(default=10.0, gt=0)


class Failsafe(_Model):
    current: Register | None = None  # safe current the pile falls back to
    timeout: Register | None = None  # seconds without communication before falling back
    timeout_s: float = 60.0
    keepalive: Keepalive | None = None


class Enable(_Model):
    reg: Register = Field(alias="register")
    on: int = 1
    off: int = 0


class Profile(_Model):
    name: str
    kind: Literal["meter", "pile"]
    vendor: str = ""
    model: str = ""
    source: str = ""  # where the register map comes from
    transports: list[Literal["modbus-tcp", "modbus-rtu"]] = Field(default_factory=lambda: ["modbus-tcp"])
    default_unit: int = Field(default=1, ge=0, le=247)
    max_read_gap: int = Field(default=16, ge=0)  # registers a block read may skip over
    registers: dict[str, Register] = Field(default_factory=dict)
    status: Status | None = None
    setpoint: Setpoint | None = None
    enable: Enable | None = None
    failsafe: Failsafe | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if self.kind == "pile":
            if self.status is None or self.setpoint is None:
                raise ValueError("a pile profile needs 'status' and 'setpoint'")
        elif "power" not in self.registers:
            raise ValueError("a meter profile needs a 'power' register")
        return self

    def read_registers(self) -> dict[str, Register]:
        """Every register read in one poll, including status and setpoint read-back."""
        regs = dict(self.registers)
        if self.status is not None:
            regs["status"] = self.status.reg
        if self.setpoint is not None:
            regs["setpoint"] = self.setpoint.reg
        return regs


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
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    return parse_profile(raw, str(path))


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
