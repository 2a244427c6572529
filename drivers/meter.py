"""The transformer meter: total and per-phase power, voltages, currents, energy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from youxu.drivers.device import ProfiledDevice
from youxu.drivers.transport import DeviceError

PHASE_KEYS = ("l1", "l2", "l3")


@dataclass(frozen=True)
class MeterReading:
    power_kw: float
    phase_power_kw: np.ndarray | None  # (3,) or None when the meter has no per-phase power
    voltage_v: dict[str, float | None]
    current_a: dict[str, float | None]
    import_kwh: float | None
    export_kwh: float | None
    temperatures_c: dict[str, float] = field(default_factory=dict)  # the profile's °C registers, by name

    def as_contract(self, profile: str) -> dict:
        ph = self.phase_power_kw
        return {
            "profile": profile,
            "power_kw": round(self.power_kw, 4),
            "phase_power_kw": {f"L{i + 1}": (None if ph is None else round(float(ph[i]), 4)) for i in range(3)},
            "voltage_v": {k: (None if v is None else round(v, 2)) for k, v in self.voltage_v.items()},
            "current_a": {k: (None if v is None else round(v, 3)) for k, v in self.current_a.items()},
            "import_kwh": None if self.import_kwh is None else round(self.import_kwh, 3),
            "export_kwh": None if self.export_kwh is None else round(self.export_kwh, 3),
        }


class Meter(Protocol):
    """What the loop needs of the transformer meter, whatever its transport."""

    timeout_s: float

    @property
    def label(self) -> str: ...

    async def read(self, timeout_s: float | None = None) -> MeterReading: ...


class ModbusMeter(ProfiledDevice):
    async def read(self, timeout_s: float | None = None) -> MeterReading:
        raw = await self.read_raw(timeout_s)
        power = self.value(raw, "power")
        phases = [self.value(raw, f"power_{k}") for k in PHASE_KEYS]
        if power is None:
            if any(p is None for p in phases):
                raise DeviceError("meter gives neither total nor per-phase power")
            power = float(sum(phases))  # type: ignore[arg-type]
        phase_arr = None if any(p is None for p in phases) else np.array(phases, dtype=float)
        if abs(power) > 1e5:
            raise DeviceError(f"implausible meter power {power:.0f} kW (wrong profile or scale?)")
        return MeterReading(
            power_kw=power,
            phase_power_kw=phase_arr,
            voltage_v={f"L{i + 1}": self.value(raw, f"voltage_{k}") for i, k in enumerate(PHASE_KEYS)},
            current_a={f"L{i + 1}": self.value(raw, f"current_{k}") for i, k in enumerate(PHASE_KEYS)},
            import_kwh=self.value(raw, "import_energy"),
            export_kwh=self.value(raw, "export_energy"),
            temperatures_c={name: v for name, reg in self.registers.items() if reg.unit == "°C"
                            and (v := self.optional_value(raw, name)) is not None},
        )
