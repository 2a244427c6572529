"""A charging pile: status, power and energy in; a power limit out (through its profile)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.device import ProfiledDevice
from drivers.profiles import Profile
from drivers.registers import encode_canonical
from drivers.transport import DeviceError, ModbusBus


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


class ModbusPile(ProfiledDevice):
    def __init__(self, profile: Profile, bus: ModbusBus, unit: int, voltage_v: float = 230.0,
                 n_phases: int = 1, timeout_s: float = 0.5) -> None:
        if profile.kind != "pile":
            raise ValueError(f"profile {profile.name} is not a pile profile")
        super().__init__(profile, bus, unit, timeout_s)
        self.voltage_v = voltage_v
        self.n_phases = n_phases
        self.setpoint_spec = profile.setpoint
        self.status_spec = profile.status

    def kw_to_a(self, kw: float) -> float:
        return kw * 1000.0 / (self.voltage_v * self.n_phases)

    def a_to_kw(self, amps: float) -> float:
        return amps * self.voltage_v * self.n_phases / 1000.0

    def decode_status(self, raw: dict[str, list[int]]) -> str:
        value = self.text_or_number(raw, "status")
        key = value if isinstance(value, str) else str(int(value)) if value is not None else ""
        return self.status_spec.codes.get(key, self.status_spec.default)

    async def read(self, timeout_s: float | None = None) -> PileReading:
        raw = await self.read_raw(timeout_s)
        power_kw = self.value(raw, "power")
        if power_kw is None:
            raise DeviceError(f"profile {self.profile.name} has no power register")
        if abs(power_kw) > 1000:
            raise DeviceError(f"implausible pile power {power_kw:.0f} kW (wrong profile or scale?)")
        sp = self.value(raw, "setpoint")
        if sp is None:
            sp_kw = sp_a = None
        elif self.setpoint_spec.quantity == "current":
            sp_a, sp_kw = sp, self.a_to_kw(sp)
        else:
            sp_kw, sp_a = sp, self.kw_to_a(sp)
        soc_pct = self.value(raw, "soc")
        soc = None if soc_pct is None or not 0 <= soc_pct <= 100 else soc_pct / 100.0
        return PileReading(
            status=self.decode_status(raw),
            power_kw=power_kw,
            energy_kwh=self.value(raw, "energy"),
            setpoint_kw=sp_kw,
            setpoint_a=sp_a,
            soc=soc,
        )

    def setpoint_words(self, kw: float) -> list[int]:
        """Register words for a power limit in kW (converted to the device's A or W)."""
        spec = self.setpoint_spec
        if kw < 0 and not spec.signed:
            kw = 0.0
        if spec.quantity == "current":
            amps = self.kw_to_a(kw)
            if amps != 0:
                amps = min(max(amps, spec.min_a), spec.max_a)
            return encode_canonical(amps, spec.reg)
        return encode_canonical(kw, spec.reg)

    async def write_setpoint_kw(self, kw: float, timeout_s: float | None = None) -> None:
        spec = self.setpoint_spec
        await self.bus.write(spec.reg.address, self.setpoint_words(kw), self.unit, spec.write_fc,
                             timeout_s or self.timeout_s)

    async def write_current_a(self, amps: float, timeout_s: float | None = None) -> None:
        await self.write_setpoint_kw(self.a_to_kw(amps), timeout_s)
