"""A charging pile: status, power and energy in; a power limit out (through its profile)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from youxu.drivers.device import ProfiledDevice
from youxu.drivers.profiles import Profile, Register
from youxu.drivers.registers import RegisterValueError, encode_canonical, toward_zero_canonical
from youxu.drivers.transport import DeviceError, ModbusBus


@dataclass(frozen=True)
class PileReading:
    status: str  # available | connected | charging | fault | unknown
    power_kw: float
    energy_kwh: float | None
    setpoint_kw: float | None
    setpoint_a: float | None
    soc: float | None  # 0..1 when the car reports it

    @property
    def plugged(self) -> bool:
        return self.status in ("connected", "charging")

    def as_contract(self, profile: str) -> dict:
        return {
            "profile": profile,
            "status": self.status,
            "power_kw": round(self.power_kw, 4),
            "energy_kwh": None if self.energy_kwh is None else round(self.energy_kwh, 4),
            "setpoint_a": None if self.setpoint_a is None else round(self.setpoint_a, 3),
        }


@dataclass(frozen=True)
class SetpointWrite:
    """What one setpoint write sent: the value in the device's quantity and the writes made."""

    kw: float
    device_value: float  # A for current piles, kW for power piles (after clamping)
    paused: bool
    writes: tuple[tuple[int, tuple[int, ...]], ...]  # (address, words) in the order written
    at_s: float  # epoch seconds


class Pile(Protocol):
    """What the loop needs of a pile, whatever its transport (Modbus registers or OCPP messages)."""

    timeout_s: float

    @property
    def label(self) -> str: ...

    async def read(self, timeout_s: float | None = None) -> PileReading: ...

    async def write_setpoint_kw(self, kw: float, timeout_s: float | None = None) -> object: ...


class ModbusPile(ProfiledDevice):
    def __init__(self, profile: Profile, bus: ModbusBus, unit: int, voltage_v: float = 230.0,
                 n_phases: int = 1, timeout_s: float = 0.5) -> None:
        if profile.kind != "pile":
            raise ValueError(f"profile {profile.name} is not a pile profile")
        super().__init__(profile, bus, unit, timeout_s)
        self.voltage_v = voltage_v
        self.n_phases = n_phases
        assert self.profile.setpoint is not None and self.profile.status is not None
        self.setpoint_spec = self.profile.setpoint
        self.status_spec = self.profile.status
        self.enabled: bool | None = None  # last enable state written (None: never)
        self.last_write: SetpointWrite | None = None
        self.write_lock = asyncio.Lock()  # setpoint writes and their keep-alive rewrites, one at a time

    def kw_to_a(self, kw: float) -> float:
        return kw * 1000.0 / (self.voltage_v * self.n_phases)

    def a_to_kw(self, amps: float) -> float:
        return amps * self.voltage_v * self.n_phases / 1000.0

    def decode_status(self, raw: dict[str, list[int]]) -> str:
        value = self.text_or_number(raw, "status")
        key = value if isinstance(value, str) else str(int(value)) if value is not None else ""
        status = self.status_spec.codes.get(key, self.status_spec.default)
        plugged = self.status_spec.plugged
        if status == "available" and plugged is not None and "plugged" in raw:
            cable = self.value(raw, "plugged")
            if cable is not None and int(cable) & plugged.mask:
                status = "connected"
        return status

    async def read(self, timeout_s: float | None = None) -> PileReading:
        raw = await self.read_raw(timeout_s)
        power_kw = self.value(raw, "power")
        if power_kw is None:
            raise DeviceError(f"profile {self.profile.name} has no power register")
        if abs(power_kw) > 1000:
            raise DeviceError(f"implausible pile power {power_kw:.0f} kW (wrong profile or scale?)")
        sp = self.optional_value(raw, "setpoint")  # Alfen reads NaN until a max current is written
        if sp is None:
            sp_kw = sp_a = None
        elif self.setpoint_spec.quantity == "current":
            sp_a, sp_kw = sp, self.a_to_kw(sp)
        else:
            sp_kw, sp_a = sp, self.kw_to_a(sp)
        soc_pct = self.optional_value(raw, "soc")
        soc = None if soc_pct is None or not 0 <= soc_pct <= 100 else soc_pct / 100.0
        return PileReading(
            status=self.decode_status(raw),
            power_kw=power_kw,
            energy_kwh=self.optional_value(raw, "energy"),
            setpoint_kw=sp_kw,
            setpoint_a=sp_a,
            soc=soc,
        )

    def device_value(self, kw: float) -> float:
        """The setpoint in the pile's own quantity (A per phase, or kW), clamped to what it
        can hold: 0 (pause), or between min_a and max_a, in whole steps of its register and
        never above what was asked (a limit is not rounded up), the minimum excepted."""
        spec = self.setpoint_spec
        if kw < 0 and not spec.signed:
            kw = 0.0
        amps = self.kw_to_a(kw)
        if amps != 0:
            sign = -1.0 if amps < 0 else 1.0
            amps = sign * min(max(abs(amps), spec.min_a), spec.max_a)
        return self.register_limit(amps, spec.reg, as_current=spec.quantity == "current")

    def register_limit(self, amps: float, reg: Register, as_current: bool) -> float:
        """A current limit in a register's quantity (A, or kW when not `as_current`), in whole steps of
        the register toward zero, but not below the pile's minimum current when `amps` is not."""
        min_a = self.setpoint_spec.min_a
        if as_current:
            return toward_zero_canonical(amps, reg, min_a)
        return toward_zero_canonical(self.a_to_kw(amps), reg, self.a_to_kw(min_a))

    def setpoint_words(self, kw: float) -> list[int]:
        """Register words for a power limit in kW (converted to the device's A or W)."""
        try:
            return encode_canonical(self.device_value(kw), self.setpoint_spec.reg)
        except RegisterValueError as exc:
            raise DeviceError(f"{self.label}: {exc}") from None

    async def write_setpoint_kw(self, kw: float, timeout_s: float | None = None) -> SetpointWrite:
        """Write a power limit (kW, + charging); 0 pauses, through `enable` where the pile
        cannot hold 0 A. Returns what was written."""
        async with self.write_lock:
            return await self._write_setpoint(kw, timeout_s)

    async def _write_setpoint(self, kw: float, timeout_s: float | None) -> SetpointWrite:
        spec = self.setpoint_spec
        enable = self.profile.enable
        value = self.device_value(kw)
        paused = value == 0
        writes: list[tuple[int, tuple[int, ...]]] = []
        if paused and not spec.zero_pauses:
            assert enable is not None  # the profile validator guarantees it
            words = await self.write_raw(enable.reg, enable.off, timeout_s)
            writes.append((enable.reg.address, tuple(words)))
            self.enabled = False
        else:
            words = self.setpoint_words(kw)
            await self.write_words(spec.reg, words, timeout_s)
            writes.append((spec.reg.address, tuple(words)))
            if enable is not None and not paused and self.enabled is not True:
                words = await self.write_raw(enable.reg, enable.on, timeout_s)
                writes.append((enable.reg.address, tuple(words)))
                self.enabled = True
        self.last_write = SetpointWrite(kw=kw, device_value=value, paused=paused, writes=tuple(writes),
                                        at_s=time.time())
        return self.last_write

    async def write_current_a(self, amps: float, timeout_s: float | None = None) -> SetpointWrite:
        return await self.write_setpoint_kw(self.a_to_kw(amps), timeout_s)

    async def rewrite_setpoint(self, timeout_s: float | None = None) -> SetpointWrite | None:
        """Write the last setpoint again (piles whose setpoint expires, e.g. Alfen's validity
        time). Nothing when no setpoint was written yet."""
        async with self.write_lock:
            if self.last_write is None:
                return None
            return await self._write_setpoint(self.last_write.kw, timeout_s)

    async def read_setpoint_a(self, timeout_s: float | None = None) -> float | None:
        """The applied setpoint read back from the pile, in A per phase (None if it has no read-back)."""
        reg = self.registers.get("setpoint")
        if reg is None:
            return None
        value = await self.read_register(reg, timeout_s)
        return value if self.setpoint_spec.quantity == "current" else self.kw_to_a(value)
